"""The linear probe separates separable features, stays at chance on noise, and is seeded."""

from __future__ import annotations

import pytest
import torch

from levl_eval.features.types import ClassTextFeatures, SplitFeatures
from levl_eval.geometry import PAPER_PROBE
from levl_eval.protocols.linear.protocol import (
    LinearProbe,
    LinearProbeSettings,
    Standardizer,
    linear_probe_metrics,
)
from levl_eval.testing.worlds import StaticFeatures, static_data

NUM_CLASSES, DIM = 5, 24
FAST = LinearProbeSettings(epochs=20, batch_size=128)


def _blobs(per_class: int, seed: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres_CD = 3.0 * torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(99))
    labels_N = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    x_ND = centres_CD[labels_N] + spread * torch.randn(len(labels_N), DIM, generator=generator)
    return x_ND, labels_N


def _source(train: tuple, test: tuple) -> StaticFeatures:
    def feats(x_ND: torch.Tensor, labels_N: torch.Tensor) -> SplitFeatures:
        return SplitFeatures(cls_ND=x_ND, z_NE=x_ND, pred_NE=x_ND, labels_N=labels_N)

    empty = torch.zeros(NUM_CLASSES, 1, 4)
    return StaticFeatures(
        images={"eval-train": feats(*train), "eval-test": feats(*test)},
        text=ClassTextFeatures(empty, empty),
    )


def test_separable_features_reach_perfect_accuracy() -> None:
    source = _source(_blobs(40, seed=0, spread=0.5), _blobs(20, seed=1, spread=0.5))
    result = LinearProbe(settings=FAST).run(source, static_data(NUM_CLASSES))
    assert result["top1"] == pytest.approx(1.0)
    assert result["mean_per_class_recall"] == pytest.approx(1.0)
    assert result["train_top1"] == pytest.approx(1.0)
    assert result["data"]["train"]["samples"] == 200
    assert result["data"]["test"]["samples"] == 100
    assert result["settings"]["epochs"] == 20 and result["settings"]["lr"] == 0.1
    assert source.geometries == [("eval-train", PAPER_PROBE), ("eval-test", PAPER_PROBE)]


def test_noise_with_random_labels_stays_near_chance() -> None:
    generator = torch.Generator().manual_seed(5)
    train = (torch.randn(400, DIM, generator=generator), torch.randint(0, NUM_CLASSES, (400,), generator=generator))
    test = (torch.randn(1000, DIM, generator=generator), torch.randint(0, NUM_CLASSES, (1000,), generator=generator))
    metrics = linear_probe_metrics(*train, *test, NUM_CLASSES, FAST)
    assert abs(metrics["top1"] - 1 / NUM_CLASSES) < 0.06
    assert metrics["train_top1"] > metrics["top1"] + 0.1  # it did fit the training noise


def test_the_probe_is_deterministic() -> None:
    train, test = _blobs(20, seed=2, spread=4.0), _blobs(20, seed=3, spread=4.0)
    first = linear_probe_metrics(*train, *test, NUM_CLASSES, FAST)
    second = linear_probe_metrics(*train, *test, NUM_CLASSES, FAST)
    assert first == second


def test_default_settings_follow_the_paper() -> None:
    settings = LinearProbe().settings()
    assert (settings["lr"], settings["weight_decay"], settings["batch_size"], settings["epochs"]) == (
        0.1, 1e-4, 4096, 50,
    )
    assert settings["std_clamp"] == 1e-8
    assert settings["geometry"] == {"name": "paper", "resize_shorter": 256, "interpolation": "bicubic",
                                    "center_crop": 224,
                                    "mean_std": "the checkpoint's own (each encoder's `preprocess`)"}
    assert settings["train_per_class_cap"] is None  # the whole training split, as the paper


def test_standardizer_uses_train_statistics_and_clamps_std() -> None:
    train_ND = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    standardize = Standardizer.fit(train_ND, std_clamp=1e-8)
    out_ND = standardize(train_ND)
    assert torch.isfinite(out_ND).all()
    torch.testing.assert_close(out_ND.mean(dim=0), torch.zeros(3))
    # a constant (after L2 normalisation) dimension has std 0 -> clamped, stays finite
    assert standardize.std_D[2] == pytest.approx(1e-8)
