"""Shared fixtures for levl_data tests: tiny real shard sets and a plain image transform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from levl_data.testing import make_tiny_shards


def image_to_tensor(image: PIL.Image.Image) -> torch.Tensor:
    """HWC uint8 -> CHW float in [0, 1]; no augmentation, so batches are comparable."""
    array = np.array(image, dtype=np.float32, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1) / 255.0


@pytest.fixture
def to_tensor() -> Callable[[PIL.Image.Image], torch.Tensor]:
    return image_to_tensor


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 good samples in 2 shards; read-only (tests that damage data make their own)."""
    return make_tiny_shards(tmp_path_factory.mktemp("tiny"), n=16)


@pytest.fixture(scope="session")
def many_shards_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 good samples in 10 shards of 4, enough to split over ranks and workers."""
    return make_tiny_shards(tmp_path_factory.mktemp("many"), n=40, samples_per_shard=4)
