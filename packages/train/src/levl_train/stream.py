"""The training data as an endless, resumable stream of per-rank micro-batches.

Shards are resampled with replacement (`data.sampling = "resampled"`) or read once per pass in a
seeded order (`"passes"`, starting another pass when a rank's shards run out), so the stream has
no natural end; an "epoch" is a fixed number of samples after which the order is redrawn from
(seed, epoch). The position is
(epoch, batches into it); resuming rebuilds that epoch's loader and replays the batches before
the position, which is exact because each epoch's order is a pure function of its seed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from levl_data.loader import build_loader
from levl_data.manifest import Manifest
from levl_train.config import DataConfig
from levl_train.errors import TrainError


@dataclass(frozen=True)
class StreamPosition:
    epoch: int = 0
    batch: int = 0  # micro-batches of this rank already taken in `epoch`


def epoch_seed(seed: int, epoch: int) -> int:
    """Stable per-epoch seed (sha256, not Python's salted hash); epoch 0 keeps `seed` itself."""
    if epoch == 0:
        return seed
    digest = hashlib.sha256(f"levl-train/epoch/{seed}/{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def pass_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of an epoch's pass after its first (data.sampling=passes)."""
    digest = hashlib.sha256(f"levl-train/pass/{seed}/{epoch}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class BatchStream:
    """Yields this rank's micro-batches forever and knows where it is."""

    def __init__(self, manifest: Manifest, data: DataConfig, *, seed: int, micro_batch: int,
                 rank: int, world_size: int, transform: Callable,
                 pin_memory: bool = False) -> None:
        self.manifest, self.data, self.seed = manifest, data, seed
        self.micro_batch, self.rank, self.world_size = micro_batch, rank, world_size
        self.transform, self.pin_memory = transform, pin_memory
        epoch_samples = data.epoch_samples or manifest.num_samples
        self.batches_per_epoch = epoch_samples // (micro_batch * world_size)
        if self.batches_per_epoch < 1:
            raise TrainError(
                f"data.epoch_samples={epoch_samples} is less than one global batch "
                f"({micro_batch * world_size}); raise data.epoch_samples")
        self.position = StreamPosition()
        self._batches = self._open(0)

    def _loader(self, seed: int, resample: bool):
        return build_loader(
            self.manifest, batch_size=self.micro_batch, image_transform=self.transform,
            shuffle_buffer=self.data.shuffle_buffer, num_workers=self.data.num_workers,
            seed=seed, rank=self.rank, world_size=self.world_size,
            resample=resample, max_failure_rate=self.data.max_failure_rate,
            pin_memory=self.pin_memory,
        )

    def _open(self, epoch: int) -> Iterator[dict[str, Any]]:
        if self.data.sampling == "resampled":
            return iter(self._loader(epoch_seed(self.seed, epoch), resample=True))
        return self._passes(epoch)

    def _passes(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Every shard of this rank once per pass, each pass in its own seeded order (the
        epoch's first pass uses the epoch's seed, so one pass per epoch is exact epochs)."""
        for index in itertools.count():
            seed = epoch_seed(self.seed, epoch) if index == 0 else pass_seed(self.seed, epoch, index)
            batches = 0
            for batch in self._loader(seed, resample=False):
                batches += 1
                yield batch
            if batches == 0:
                raise TrainError(
                    f"rank {self.rank}: its shards of {self.manifest.path} hold less than one "
                    f"micro-batch ({self.micro_batch}); lower data.batch_size or use "
                    "data.sampling=resampled")

    def __next__(self) -> dict[str, Any]:
        if self.position.batch >= self.batches_per_epoch:
            self.position = StreamPosition(self.position.epoch + 1, 0)
            self._batches = self._open(self.position.epoch)
        batch = next(self._batches)
        self.position = StreamPosition(self.position.epoch, self.position.batch + 1)
        return batch

    def __iter__(self):
        return self

    def state_dict(self) -> dict[str, int]:
        return {**asdict(self.position), "batches_per_epoch": self.batches_per_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Replay up to the saved position. Replaying consumes the global torch RNG (in-process
        augmentation), so callers restore RNG states after this, not before."""
        if state["batches_per_epoch"] != self.batches_per_epoch:
            raise TrainError(
                f"saved data position has {state['batches_per_epoch']} batches per epoch, this "
                f"run {self.batches_per_epoch}: batch size, world size or data.epoch_samples "
                "changed; resume with the run's own settings")
        self.position = StreamPosition(state["epoch"], 0)
        self._batches = self._open(state["epoch"])
        with torch.random.fork_rng(devices=[]):
            for _ in range(state["batch"]):
                next(self)
