"""The bad samples a run skipped, by reason: every rank's, over every resume.

Each rank tallies what its loader skipped since this process started (`Run.skipped`); the run's
total is the one saved in the checkpoint it resumed from plus every rank's tally, summed in a
collective at each log and checkpoint, so metrics.jsonl and the next checkpoint count the whole
run, not rank 0 since its last restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch.distributed as dist

from levl_train.errors import TrainError
from levl_train.stream import is_count


def run_total(saved: Mapping[str, int], mine: Counter[str]) -> dict[str, int]:
    """The run's skips so far: `saved` plus every rank's `mine` (a collective on N ranks)."""
    total = Counter(saved)
    if dist.is_initialized() and dist.get_world_size() > 1:
        tallies: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(tallies, dict(mine))
        for tally in tallies:
            total.update(tally)
    else:
        total.update(mine)
    return dict(sorted(total.items()))


def saved_total(raw: Any, where: str) -> dict[str, int]:
    """A checkpoint's saved total, checked (the file is untrusted JSON)."""
    if not (isinstance(raw, dict) and all(isinstance(reason, str) and is_count(count)
                                          for reason, count in raw.items())):
        raise TrainError(f"{where}: skipped={raw!r} is not a count per reason; resume from a "
                         "checkpoint the run wrote")
    return dict(raw)
