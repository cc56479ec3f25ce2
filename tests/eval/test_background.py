"""Background robustness: features that read the background fall on mixed_rand, features that
read the object do not."""

from __future__ import annotations

import pytest
import torch

from levl_eval.data.splits import EvalSplit
from levl_eval.features.types import SplitFeatures
from levl_eval.geometry import CHECKPOINT, PAPER_PROBE
from levl_eval.protocols.background.data import VARIANTS, BackgroundData
from levl_eval.protocols.background.protocol import BackgroundRobustness
from levl_eval.protocols.linear.protocol import LinearProbeSettings
from levl_eval.testing.worlds import StaticFeatures

NUM_CLASSES, DIM, PER_SPLIT = 4, 16, 240
FAST = LinearProbeSettings(epochs=20, batch_size=128)


def _scenes(generator: torch.Generator, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(object class, background family) per image; family k is class k's typical background."""
    labels_N = torch.arange(NUM_CLASSES).repeat(PER_SPLIT // NUM_CLASSES)
    other_N = (labels_N + torch.randint(1, NUM_CLASSES, labels_N.shape, generator=generator)) % NUM_CLASSES
    if variant == "mixed_same":
        return labels_N, labels_N
    if variant == "mixed_rand":
        return labels_N, other_N
    typical_N = torch.rand(labels_N.shape, generator=generator) < 0.9
    return labels_N, torch.where(typical_N, labels_N, other_N)


def _features(labels_N, family_N, generator, reads: str) -> SplitFeatures:
    signal_N = labels_N if reads == "object" else family_N
    x_ND = torch.randn(len(labels_N), DIM, generator=generator)
    x_ND[torch.arange(len(labels_N)), signal_N] += 6.0
    return SplitFeatures(x_ND, x_ND, x_ND, labels_N)


def _toy(reads: str) -> tuple[StaticFeatures, BackgroundData]:
    generator = torch.Generator().manual_seed(0)
    names = {"original": "test", "mixed_same": "test/mixed_same", "mixed_rand": "test/mixed_rand"}
    images = {"train": _features(*_scenes(generator, "original"), generator, reads)}
    for variant, name in names.items():
        images[name] = _features(*_scenes(generator, variant), generator, reads)
    data = BackgroundData("toy", EvalSplit("train"),
                          {variant: EvalSplit(name) for variant, name in names.items()},
                          tuple(f"c{i}" for i in range(NUM_CLASSES)), train_rule="toy train split")
    return StaticFeatures(images=images), data


def _run(reads: str) -> dict:
    return BackgroundRobustness(settings=FAST).run(*_toy(reads))


def test_every_variant_is_read_under_the_probe_geometry_it_records() -> None:
    source, data = _toy("object")
    result = BackgroundRobustness(settings=FAST).run(source, data)
    assert {geometry for _, geometry in source.geometries} == {PAPER_PROBE} and len(source.geometries) == 4
    assert result["settings"]["geometry"] == PAPER_PROBE.describe()
    source, data = _toy("object")
    result = BackgroundRobustness(settings=FAST, geometry=CHECKPOINT).run(source, data)
    assert {geometry for _, geometry in source.geometries} == {CHECKPOINT}
    assert result["settings"]["geometry"]["name"] == "checkpoint"


def test_background_features_drop_on_mixed_rand() -> None:
    result = _run("background")
    assert result["original_top1"] > 0.8 and result["mixed_same_top1"] > 0.85
    assert result["mixed_rand_top1"] < 0.15
    assert result["drop_mixed_rand"] > 0.65 and result["bg_gap"] > 0.75
    assert result["drop_mixed_rand"] == pytest.approx(result["original_top1"] - result["mixed_rand_top1"])


def test_object_features_do_not_drop() -> None:
    result = _run("object")
    assert result["original_top1"] > 0.9
    assert abs(result["drop_mixed_same"]) < 0.05 and abs(result["drop_mixed_rand"]) < 0.05
    assert set(result["variants"]) == set(VARIANTS)
    assert result["data"]["train"]["samples"] == PER_SPLIT
    assert result["data"]["mixed_rand"]["samples"] == PER_SPLIT
    assert result["settings"]["epochs"] == 20 and result["settings"]["trained_on"] == "original images"
