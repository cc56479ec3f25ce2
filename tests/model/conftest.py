"""Shared micro-size fixtures: 32 px images, patch 8, E=16, so the suite stays fast on 2 cores."""

from __future__ import annotations

import pytest
import torch

from levl_model import ModelConfig, ObjectiveConfig, build_model, load_tokenizer, model_config


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """Small ops are faster single-threaded on the 2 shared cores than with thread hand-offs."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def micro_cfg() -> ModelConfig:
    return model_config(
        "micro", image_size=32, patch_size=8, embed_dim=16, proj_hidden=32, pred_hidden=32
    )


@pytest.fixture
def micro_model(micro_cfg):
    return build_model(micro_cfg, seed=0)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return load_tokenizer(cache_root=tmp_path_factory.mktemp("bpe-cache"))


@pytest.fixture
def small_objective_cfg() -> ObjectiveConfig:
    return ObjectiveConfig(num_slices=64)


@pytest.fixture
def batch(tokenizer):
    """4 images and captions of different lengths (so padding and masks matter)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=generator)
    captions = [
        "a red circle",
        "two shapes: a small blue star left of a large square",
        "ring",
        "a green heart",
    ]
    input_ids, attention_mask = tokenizer(captions)
    return images, input_ids, attention_mask
