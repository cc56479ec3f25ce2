"""The training stream's sampling: `data.sampling=passes` reads every shard once per epoch (exact
epochs, as open_clip's default loader), wraps into another pass when an epoch asks for more,
and resumes at its position exactly; `resampled` draws shards with replacement."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch
import torchvision.transforms.v2 as T

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


def stream(manifest, sampling: str, epoch_samples: int | None = None, seed: int = 0) -> BatchStream:
    data = dataclasses.replace(DataConfig(), sampling=sampling, epoch_samples=epoch_samples,
                               shuffle_buffer=16, num_workers=0)
    return BatchStream(manifest, data, seed=seed, micro_batch=BATCH, rank=0, world_size=1,
                       transform=T.Compose([T.ToImage(), T.ToDtype(torch.float32)]))


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
    with pytest.raises(TrainError, match="hold less than one micro-batch"):
        next(BatchStream(small, data, seed=0, micro_batch=BATCH, rank=0, world_size=1,
                         transform=T.ToImage()))
