"""The training data as an endless, resumable stream of per-rank micro-batches.

Shards are resampled with replacement (`data.sampling = "resampled"`) or read once per pass in a
seeded order (`"passes"`, starting another pass when a rank's shards run out), so the stream has
no natural end; an "epoch" is a fixed number of samples after which the order is redrawn from
(seed, epoch). The position is
(epoch, batches into it), the same on every rank, plus each rank's reader position (`rank_state`:
the pass, and the raw samples each loader worker has consumed). Resuming rebuilds that epoch's
loader started at the reader position: the samples before it are read past, not decoded, and
since each sample's augmentation has its own seed the batches are the uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from levl_data.loader import build_loader
from levl_data.manifest import Manifest
from levl_data.position import POSITION_KEY, position_readers
from levl_train.config import DataConfig
from levl_train.errors import TrainError


@dataclass(frozen=True)
class StreamPosition:
    epoch: int = 0
    batch: int = 0  # micro-batches of this rank already taken in `epoch`


@dataclass
class ReaderPosition:
    """Where this rank's loader stands: its pass (data.sampling=passes), the raw samples each
    reader (a loader worker; an ffcv file's one order) has consumed, and the reader whose batch
    comes next. Written per rank as JSON
    ({"pass", "samples", "first_worker"}: resume.write_reader) and read back untrusted."""

    pass_index: int
    samples: list[int]
    first_worker: int = 0

    @classmethod
    def fresh(cls, pass_index: int, workers: int) -> ReaderPosition:
        return cls(pass_index, [0] * workers)

    @property
    def started(self) -> bool:
        return any(self.samples)

    def advance(self, worker: int, samples: int) -> None:
        """Past a batch from loader `worker`, which had then consumed `samples` raw samples."""
        self.samples[worker] = samples
        self.first_worker = (worker + 1) % len(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {"pass": self.pass_index, "samples": list(self.samples),
                "first_worker": self.first_worker}

    @classmethod
    def from_json(cls, raw: Any, workers: int) -> ReaderPosition | None:
        """The saved position if it fits `workers` readers; None for a well-formed one taken
        with another loader worker count (a run may resume with fewer CPUs: the caller
        replays); TrainError for anything else (the file is untrusted JSON)."""
        samples = raw.get("samples") if isinstance(raw, dict) else None
        counts = isinstance(samples, list) and bool(samples) and all(map(is_count, samples))
        if counts and len(samples) != workers:
            return None
        fits = (counts and is_count(raw.get("first_worker"), workers)
                and is_count(raw.get("pass")))
        if not fits:
            raise TrainError(
                f"saved reader position {raw!r} is malformed (want the pass, one sample count "
                f"per each of the {workers} readers and the next reader); resume from a "
                "checkpoint the run wrote")
        return cls(raw["pass"], list(samples), raw["first_worker"])


def is_count(value: Any, below: int | None = None) -> bool:
    """An int >= 0 (not a bool, not a float) and below `below`: a count read from JSON."""
    return type(value) is int and value >= 0 and (below is None or value < below)


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
        self.workers = position_readers(manifest.data["format"], data.num_workers)
        self.position = StreamPosition()
        self._reader: ReaderPosition | None = ReaderPosition.fresh(0, self.workers)
        # Epoch 0's webdataset loader is built here (a loader the data cannot serve fails
        # before the run starts) but iterated only by the first batch: a resumed stream opens
        # its own, and this one's workers would otherwise be reading and decoding epoch 0
        # meanwhile. (Not an ffcv loader: building one compiles its pipeline and draws an
        # order, work a resumed stream would throw away.)
        self._first = (self._loader(epoch_seed(seed, 0), True, self._reader)
                       if data.sampling == "resampled" and manifest.data["format"] != "ffcv"
                       else None)
        self._batches: Iterator[dict[str, Any]] | None = None

    def _loader(self, seed: int, resample: bool, reader: ReaderPosition | None = None):
        """This rank's loader of one epoch or pass; `reader` starts it where a rank_state was
        taken (its first worker and the samples each worker already consumed)."""
        start = {}
        if reader is not None and reader.started:
            start = {"resume_samples": list(reader.samples), "first_worker": reader.first_worker}
        return build_loader(
            self.manifest, batch_size=self.micro_batch, image_transform=self.transform,
            shuffle_buffer=self.data.shuffle_buffer, num_workers=self.data.num_workers,
            seed=seed, rank=self.rank, world_size=self.world_size,
            resample=resample, max_failure_rate=self.data.max_failure_rate,
            pin_memory=self.pin_memory, worker_init=leave_requeue_to_the_trainer, **start,
        )

    def _open(self, epoch: int, reader: ReaderPosition | None = None
              ) -> Iterator[dict[str, Any]]:
        reader = self._reader = reader or ReaderPosition.fresh(0, self.workers)
        if self.data.sampling == "resampled":
            return iter(self._loader(epoch_seed(self.seed, epoch), True, reader))
        return self._passes(epoch, reader)

    def _passes(self, epoch: int, reader: ReaderPosition) -> Iterator[dict[str, Any]]:
        """Every shard of this rank once per pass, each pass in its own seeded order (the
        epoch's first pass uses the epoch's seed, so one pass per epoch is exact epochs).
        A resumed pass may have nothing left: only a fresh pass without batches is an error."""
        for index in itertools.count(reader.pass_index):
            seed = epoch_seed(self.seed, epoch) if index == 0 else pass_seed(self.seed, epoch, index)
            self._reader = (reader if index == reader.pass_index
                            else ReaderPosition.fresh(index, self.workers))
            batches = 0
            for batch in self._loader(seed, False, self._reader):
                batches += 1
                yield batch
            if batches == 0 and not self._reader.started:
                raise TrainError(
                    f"rank {self.rank}: its shards of {self.manifest.path} give no loader worker "
                    f"a micro-batch ({self.micro_batch}); lower data.batch_size or "
                    "data.num_workers, or use data.sampling=resampled")

    def __next__(self) -> dict[str, Any]:
        if self.position.batch >= self.batches_per_epoch:
            self.position = StreamPosition(self.position.epoch + 1, 0)
            self._batches = self._open(self.position.epoch)
        elif self._batches is None:  # a fresh stream's first batch
            self._batches = (iter(self._first) if self._first is not None
                             else self._open(0, self._reader))
            self._first = None
        batch = next(self._batches)
        self._note(batch.pop(POSITION_KEY, None))
        self.position = StreamPosition(self.position.epoch, self.position.batch + 1)
        return batch

    def _note(self, taken: dict[str, int] | None) -> None:
        """Move the reader position past a batch taken from reader `taken["worker"]` (a batch
        without a position leaves it unknown: a resume then replays)."""
        if taken is None:
            self._reader = None
        elif self._reader is not None:
            self._reader.advance(taken["worker"], taken["samples"])

    def __iter__(self):
        return self

    def state_dict(self) -> dict[str, int]:
        """The position every rank shares (rank 0 writes it)."""
        return {**asdict(self.position), "batches_per_epoch": self.batches_per_epoch}

    def rank_state(self) -> dict[str, Any] | None:
        """This rank's reader position (each rank writes its own), or None where the loader
        reported none: a resume then replays the epoch."""
        return None if self._reader is None else self._reader.to_json()

    def load_state_dict(self, state: dict[str, int],
                        reader: dict[str, Any] | None = None) -> None:
        """Go to the saved position: with this rank's `reader` (its rank_state) the loader
        starts there and decodes nothing before it; without one (a checkpoint older than
        reader positions, or than ffcv's) the epoch's batches up to it are replayed."""
        self._first = None  # a resumed stream opens its own loader
        if state["batches_per_epoch"] != self.batches_per_epoch:
            raise TrainError(
                f"saved data position has {state['batches_per_epoch']} batches per epoch, this "
                f"run {self.batches_per_epoch}: batch size, world size or data.epoch_samples "
                "changed; resume with the run's own settings")
        position = None if reader is None else ReaderPosition.from_json(reader, self.workers)
        if reader is not None and position is None:
            print(f"note: the checkpoint's loader had {len(reader['samples'])} workers, this run "
                  f"{self.workers} (data.num_workers); replaying the epoch up to the position "
                  "instead of starting at it", file=sys.stderr)
        if position is not None:
            self._start_at(state, position)
            return
        self.position = StreamPosition(state["epoch"], 0)
        self._batches = self._open(state["epoch"])
        with torch.random.fork_rng(devices=[]):
            for _ in range(state["batch"]):
                next(self)

    def _start_at(self, state: dict[str, int], reader: ReaderPosition) -> None:
        """Open the saved epoch's loader at `reader`; at the epoch's end open nothing (the next
        batch opens the next epoch)."""
        self.position = StreamPosition(state["epoch"], state["batch"])
        self._reader = reader
        done = state["batch"] >= self.batches_per_epoch
        self._batches = iter(()) if done else self._open(state["epoch"], reader)


def leave_requeue_to_the_trainer(worker_id: int) -> None:
    """A loader worker ignores submitit's requeue signal (USR2, or SUBMITIT_PREEMPT_SIGNAL: its
    rule, JobEnvironment.USR_SIG). SLURM signals every process of a job step, and a forked
    worker holds the trainer's Python handlers: each worker ran submitit's checkpoint-and-
    requeue as if it were rank 0 (it has rank 0's environment), writing the same pickle at
    once and requeueing the job again, and the job failed instead of requeueing. (A signal in
    the instant between a worker's fork and this call would still reach the inherited one.)"""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    signal.signal(getattr(signal, name, signal.SIGUSR2), signal.SIG_IGN)
