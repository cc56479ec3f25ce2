"""The training stream's sampling: `data.sampling=passes` reads every shard once per epoch (exact
epochs, as open_clip's default loader), wraps into another pass when an epoch asks for more,
and resumes at its position exactly, decoding nothing before it; `resampled` draws shards with
replacement."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
import torch
import torchvision.transforms.v2 as T

import levl_data.loader as levl_loader
from levl_data.convert import convert
from levl_data.manifest import read_manifest
from levl_data.testing import make_tiny_shards
from levl_train.config import DataConfig
from levl_train.errors import TrainError
from levl_train.stream import BatchStream

BATCH = 8


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=8, samples_per_shard=8)
    return read_manifest(path)


def stream(manifest, sampling: str, epoch_samples: int | None = None, seed: int = 0,
           num_workers: int = 0, transform=None) -> BatchStream:
    data = dataclasses.replace(DataConfig(), sampling=sampling, epoch_samples=epoch_samples,
                               shuffle_buffer=16, num_workers=num_workers)
    return BatchStream(manifest, data, seed=seed, micro_batch=BATCH, rank=0, world_size=1,
                       transform=transform or T.Compose([T.ToImage(), T.ToDtype(torch.float32)]))


class CountingJitter:
    """Pixels plus one draw from the global torch RNG (where torchvision's augmentations draw),
    counting its calls in a shared counter that loader workers update too."""

    def __init__(self) -> None:
        self.calls = multiprocessing.Value("i", 0)

    def __call__(self, image) -> torch.Tensor:
        with self.calls.get_lock():
            self.calls.value += 1
        return T.ToImage()(image).to(torch.float32) + torch.rand(())


def keys(batches: BatchStream, count: int) -> list[str]:
    return [key for _ in range(count) for key in next(batches)["key"]]


def test_passes_read_every_sample_once_per_epoch_in_a_new_order_each_epoch(manifest) -> None:
    batches = stream(manifest, "passes")
    assert batches.batches_per_epoch == 6
    first, second = keys(batches, 6), keys(batches, 6)
    every = sorted(f"{i:06d}" for i in range(48))
    assert sorted(first) == every and sorted(second) == every
    assert first != second


def test_resampled_shards_repeat_some_samples_within_an_epoch(manifest) -> None:
    """The contrast that makes `passes` worth having on a small set (this seed draws a shard
    twice in the first epoch)."""
    counts = Counter(keys(stream(manifest, "resampled"), 6))
    assert max(counts.values()) > 1 and len(counts) < 48


def test_an_epoch_longer_than_the_data_starts_another_pass(manifest) -> None:
    batches = stream(manifest, "passes", epoch_samples=80)  # 10 batches: one pass and 4 more
    first_pass, more = keys(batches, 6), keys(batches, 4)
    assert sorted(first_pass) == sorted(f"{i:06d}" for i in range(48))
    assert len(set(more)) == 32 and more != first_pass[:32]


def test_a_resumed_passes_stream_continues_with_the_same_batches(manifest) -> None:
    original = stream(manifest, "passes", epoch_samples=80)
    keys(original, 8)  # into the second pass of epoch 0
    state = original.state_dict()
    expected = keys(original, 5)  # across the epoch's end
    resumed = stream(manifest, "passes", epoch_samples=80)
    resumed.load_state_dict(state)
    assert keys(resumed, 5) == expected


def test_shards_smaller_than_a_batch_are_one_clear_error(tmp_path) -> None:
    small = read_manifest(make_tiny_shards(tmp_path, n=4, image_size=8, samples_per_shard=4))
    data = dataclasses.replace(DataConfig(), sampling="passes", epoch_samples=16)
    with pytest.raises(TrainError, match="give no loader worker a micro-batch"):
        next(BatchStream(small, data, seed=0, micro_batch=BATCH, rank=0, world_size=1,
                         transform=T.ToImage()))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("sampling", ["resampled", "passes"])
def test_a_resumed_stream_decodes_nothing_before_its_position_and_gives_the_same_batches(
        manifest, sampling, num_workers) -> None:
    """A replay would decode the 7 batches before the position (56 samples) before giving its
    first; resuming from the reader position decodes only what it gives, plus the one sample
    webdataset's batcher reads ahead per loader (and, with workers, what they prefetch: at most
    prefetch_factor 2 x 2 workers batches ahead)."""
    original = stream(manifest, sampling, epoch_samples=80, num_workers=num_workers,
                      transform=CountingJitter())
    keys(original, 7)  # odd: with two workers the second one is next; passes: second pass
    state, reader = original.state_dict(), original.rank_state()
    expected = [next(original) for _ in range(5)]  # across the epoch's end
    jitter = CountingJitter()
    resumed = stream(manifest, sampling, epoch_samples=80, num_workers=num_workers,
                     transform=jitter)
    resumed.load_state_dict(state, reader)
    first = next(resumed)
    assert jitter.calls.value <= (1 if num_workers == 0 else 5) * (BATCH + 1)
    got = [first] + [next(resumed) for _ in range(4)]
    if num_workers == 0:
        assert jitter.calls.value <= 5 * BATCH + 2  # two loaders: the epoch's end is crossed
    assert [batch["key"] for batch in got] == [batch["key"] for batch in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert torch.equal(mine["image"], theirs["image"])  # the same augmentation draws
    assert resumed.state_dict() == original.state_dict()
    assert resumed.rank_state() == original.rank_state()


class BytesRead:
    """Counts the shard bytes every loader of this process reads (num_workers=0)."""

    def __init__(self, monkeypatch) -> None:
        self.total = 0
        read = levl_loader._HashingReader.read

        def counted(reader, size: int = -1) -> bytes:
            data = read(reader, size)
            self.total += len(data)
            return data

        monkeypatch.setattr(levl_loader._HashingReader, "read", counted)

    def during(self, take: Callable[[], object]) -> int:
        before = self.total
        take()
        return self.total - before


def test_a_stream_resumed_at_its_epochs_end_reads_nothing_of_the_epoch_before(
        manifest, monkeypatch) -> None:
    """What `epochs_end_at_checkpoints` buys the B/16 recipes: resumed at an epoch's end, the
    stream reads exactly the bytes the uninterrupted one reads for the same batches, while a
    resume a batch earlier reads the epoch's first three batches (and its buffer) again."""
    counter = BytesRead(monkeypatch)
    original = stream(manifest, "resampled", epoch_samples=32)  # 4 batches an epoch
    keys(original, 3)
    mid_state, mid_reader = original.state_dict(), original.rank_state()
    last = counter.during(lambda: keys(original, 1))
    end_state, end_reader = original.state_dict(), original.rank_state()
    expected: list[str] = []
    following = counter.during(lambda: expected.extend(keys(original, 2)))

    resumed = stream(manifest, "resampled", epoch_samples=32)
    resumed.load_state_dict(end_state, end_reader)
    got: list[str] = []
    assert counter.during(lambda: got.extend(keys(resumed, 2))) == following
    assert got == expected

    from_mid = stream(manifest, "resampled", epoch_samples=32)
    from_mid.load_state_dict(mid_state, mid_reader)
    assert counter.during(lambda: keys(from_mid, 3)) > last + following


@pytest.fixture(scope="module")
def ffcv_manifest(manifest, tmp_path_factory):
    return read_manifest(convert(manifest.path, tmp_path_factory.mktemp("ffcv") / "ffcv"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # numba, ffcv
@pytest.mark.usefixtures("collect_ffcv_loaders")
@pytest.mark.parametrize("sampling", ["resampled", "passes"])
def test_a_resumed_ffcv_stream_starts_at_its_position_too(ffcv_manifest, sampling) -> None:
    """An ffcv file resumes from its reader position as shards do: no replay of the epoch."""
    original = stream(ffcv_manifest, sampling, epoch_samples=80, transform=CountingJitter())
    keys(original, 7)  # passes: into the second pass of epoch 0
    state, reader = original.state_dict(), original.rank_state()
    assert reader == {"pass": int(sampling == "passes"), "samples": [8 if sampling == "passes"
                                                                     else 56], "first_worker": 0}
    expected = [next(original) for _ in range(5)]  # across the epoch's end
    jitter = CountingJitter()
    resumed = stream(ffcv_manifest, sampling, epoch_samples=80, transform=jitter)
    resumed.load_state_dict(state, reader)
    got = [next(resumed) for _ in range(5)]
    assert jitter.calls.value == 5 * BATCH  # a replay would augment 7 batches more first
    assert [batch["key"] for batch in got] == [batch["key"] for batch in expected]
    assert all(torch.equal(mine["image"], theirs["image"])
               for mine, theirs in zip(got, expected, strict=True))
    assert resumed.rank_state() == original.rank_state()


@pytest.mark.parametrize("reader", [{"pass": 0, "samples": [1.5], "first_worker": 0},
                                    {"pass": 0, "samples": [8], "first_worker": True}, []])
def test_a_reader_position_that_does_not_fit_is_one_clear_error(manifest, reader) -> None:
    batches = stream(manifest, "resampled")
    with pytest.raises(TrainError, match="saved reader position .* is malformed"):
        batches.load_state_dict(batches.state_dict(), reader)


def test_a_reader_from_another_worker_count_replays_instead(manifest, capsys) -> None:
    """A run resumed with fewer loader workers (a smaller node) still resumes, by replay."""
    original = stream(manifest, "resampled")
    for _ in range(3):
        next(original)
    resumed = stream(manifest, "resampled")
    resumed.load_state_dict(original.state_dict(),
                            {"pass": 0, "samples": [8, 8], "first_worker": 0})
    assert "2 workers, this run 1" in capsys.readouterr().err
    assert resumed.state_dict() == original.state_dict()
    assert torch.equal(next(resumed)["image"], next(original)["image"])


def test_a_passes_stream_resumes_after_one_worker_ran_out_of_shards(tmp_path) -> None:
    """Shards split unevenly over two loader workers (6 shards, the last half full): after 4
    batches worker 0 has run out while worker 1 still reads, and the saved next worker is the
    exhausted one. Resuming there, and at the next pass's start, gives the uninterrupted run's
    batches."""
    uneven = read_manifest(make_tiny_shards(tmp_path, n=44, image_size=8, samples_per_shard=8))
    original = stream(uneven, "passes", epoch_samples=96, num_workers=2)
    taken, saved = [], []
    for _ in range(8):
        saved.append((original.state_dict(), original.rank_state()))
        taken.append(next(original)["key"])
    assert saved[4][1] == {"pass": 0, "samples": [16, 16], "first_worker": 0}
    assert saved[5][1]["samples"] == [16, 24]  # worker 1 gave the pass's last batch
    for position in (4, 5):
        resumed = stream(uneven, "passes", epoch_samples=96, num_workers=2)
        resumed.load_state_dict(*saved[position])
        assert [next(resumed)["key"] for _ in range(8 - position)] == taken[position:], position


def test_loader_workers_leave_the_requeue_signal_to_the_trainer(manifest, tmp_path) -> None:
    """SLURM's USR2 reaches every process of the step: a loader worker (forked, holding the
    trainer's handlers) must neither run the trainer's handler (submitit's requeue) nor die."""
    ran_in = tmp_path / "handler-ran-in"

    def trainers_handler(signum, frame) -> None:
        with open(ran_in, "a") as out:
            out.write(f"{os.getpid()}\n")

    previous = signal.signal(signal.SIGUSR2, trainers_handler)
    try:
        batches = stream(manifest, "resampled", num_workers=1)
        next(batches)
        workers = multiprocessing.active_children()
        assert workers, "the loader started no worker process"
        for worker in workers:
            os.kill(worker.pid, signal.SIGUSR2)
        time.sleep(0.5)
        assert len(next(batches)["key"]) == BATCH  # the worker still loads
        assert all(worker.is_alive() for worker in workers)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not ran_in.exists(), f"the trainer's handler ran in pid {ran_in.read_text().split()}"
