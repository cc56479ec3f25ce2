"""The linear probe separates separable features, stays at chance on noise, and is seeded; it
standardises a batch at a time, to the same numbers as the whole split standardised up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from levl_eval.features.spill import ArrayWriter
from levl_eval.features.types import ClassTextFeatures, SplitFeatures
from levl_eval.geometry import PAPER_PROBE
from levl_eval.heads import HeadTraining, seeded_linear
from levl_eval.metrics import classification_metrics
from levl_eval.probes import train_classifier
from levl_eval.protocols.linear.protocol import (
    FittedProbe,
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


def test_standardizer_statistics_equal_an_independent_numpy_computation(tmp_path: Path) -> None:
    """Fitted in float64 over chunks of rows (here 7 rows a chunk, from a mapped file), the
    statistics are those of the whole L2-normalised set, a constant dimension clamped."""
    generator = torch.Generator().manual_seed(11)
    train_ND = 2.0 + torch.randn(100, DIM, generator=generator)
    train_ND[:, 5] = 0.0  # constant after normalisation too
    writer = ArrayWriter(tmp_path / "cls_ND.bin", torch.float32)
    for part_ND in train_ND.split(30):
        writer.append(part_ND)
    mapped_ND = writer.finish()
    standardize = Standardizer.fit(mapped_ND, std_clamp=1e-8, chunk_bytes=7 * DIM * 8)
    rows = train_ND.numpy().astype(np.float64)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    np.testing.assert_allclose(standardize.mean_D.numpy(), unit.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(standardize.std_D.numpy(), np.maximum(unit.std(axis=0), 1e-8),
                               rtol=1e-5, atol=1e-7)
    assert standardize.std_D[5] == pytest.approx(1e-8)
    assert standardize.mean_D.dtype == standardize.std_D.dtype == torch.float32


def test_a_batch_read_standardises_its_rows_exactly_as_the_whole_set() -> None:
    generator = torch.Generator().manual_seed(12)
    x_ND = torch.randn(300, DIM, generator=generator)
    standardize = Standardizer.fit(x_ND, std_clamp=1e-8)
    whole_ND, read = standardize(x_ND), standardize.reader(x_ND, "cpu")
    for batch_B in torch.randperm(300, generator=generator).split(64):
        assert torch.equal(read(batch_B), whole_ND[batch_B])


def _whole_split_probe(train: tuple, settings: LinearProbeSettings) -> tuple[Standardizer, nn.Linear]:
    """The probe as trained before batches were standardised as read: the whole train split
    standardised up front (the reference the batched probe must equal bit for bit)."""
    (x_ND, labels_N), standardize = train, Standardizer.fit(train[0], settings.std_clamp)
    standardized_ND = standardize(x_ND)
    probe = seeded_linear(DIM, NUM_CLASSES, settings.seed, bias=False)
    trained = train_classifier(probe, lambda batch_B: standardized_ND[batch_B], labels_N,
                               HeadTraining.of(settings), "cpu")
    return standardize, trained


def test_the_batched_probe_trains_and_scores_as_the_whole_split_one() -> None:
    train, test = _blobs(60, seed=4, spread=3.0), _blobs(70, seed=5, spread=3.0)  # 300 and 350 rows
    fitted = FittedProbe.fit(*train, NUM_CLASSES, FAST)
    standardize, reference = _whole_split_probe(train, FAST)
    assert torch.equal(fitted.probe.weight, reference.weight)
    with torch.no_grad():
        expected = classification_metrics(reference(standardize(test[0])), test[1])
    assert fitted.metrics(*test) == expected
    assert linear_probe_metrics(*train, *test, NUM_CLASSES, FAST)["top1"] == expected["top1"]
