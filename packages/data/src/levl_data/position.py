"""Where a loader stands, as each batch reports it: what a resumed loader starts from.

Every batch of a levl loader carries `batch[POSITION_KEY] = {"worker": w, "samples": n}`: the
reader that made it (a webdataset DataLoader worker; 0 for an ffcv file, whose decode threads
share one order) and the raw samples that reader had consumed through the batch's last sample.
Passing each reader's last `samples` back (`build_loader(resume_samples=...)`) starts the loader
at the batch the uninterrupted one would have given next.
"""

from __future__ import annotations

POSITION_KEY = "__levl_position__"  # not a member name a shard set could carry


def position_readers(data_format: str, num_workers: int) -> int:
    """How many sample counts a loader's position holds: one per webdataset worker, one for an
    ffcv file."""
    return 1 if data_format == "ffcv" else max(num_workers, 1)
