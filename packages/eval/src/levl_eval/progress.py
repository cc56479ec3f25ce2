"""The one progress bar of levl-eval (feature extraction, head training): tqdm on stderr, silent
when stderr is not a terminal, so logs of batch jobs stay free of bar redraws."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(*, total: int | None, desc: str, unit: str) -> tqdm:
    """A manually updated bar of `total` `unit`s (its rate reads `unit`/s); disabled unless
    stderr is a terminal (tqdm's `disable=None`)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None)
