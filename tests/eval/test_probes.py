"""The MLP and attentive probes read signals a linear CLS probe cannot, are seeded, and are
reported as entries of the `linear` protocol with their own settings."""

from __future__ import annotations

import pytest
import torch

from levl_eval.errors import EvalError
from levl_eval.features.types import PatchFeatures, SplitFeatures
from levl_eval.geometry import PAPER_PROBE
from levl_eval.heads import HeadTraining, seeded_module
from levl_eval.probes import (
    AttentiveProbeSettings,
    MLPProbe,
    MLPProbeSettings,
    attention_heads,
    mlp_probe_metrics,
    scored,
    train_classifier,
)
from levl_eval.protocols.linear.protocol import LinearProbe, LinearProbeSettings, check_probe_names
from levl_eval.standardize import Standardizer
from levl_eval.testing.worlds import StaticFeatures, static_data

LINEAR = LinearProbeSettings(epochs=30, batch_size=128)
MLP = MLPProbeSettings(hidden=64, lr=1e-2, batch_size=64, epochs=40)
ATTENTIVE = AttentiveProbeSettings(lr=3e-3, batch_size=64, epochs=30)


def _xor_split(count: int, seed: int) -> SplitFeatures:
    """Class = XOR of the signs of dims 0 and 1; 6 more dims of noise. No linear separation."""
    generator = torch.Generator().manual_seed(seed)
    x_ND = torch.randn(count, 8, generator=generator)
    labels_N = ((x_ND[:, 0] > 0) ^ (x_ND[:, 1] > 0)).long()
    return SplitFeatures(cls_ND=x_ND, z_NE=x_ND, pred_NE=x_ND, labels_N=labels_N)


def _token_splits(count: int, seed: int, classes: int = 4) -> tuple[SplitFeatures, PatchFeatures]:
    """The class lives in one patch token at a random position; the CLS feature is pure noise."""
    generator = torch.Generator().manual_seed(seed)
    centres_CD = 3.0 * torch.randn(classes, 32, generator=torch.Generator().manual_seed(7))
    labels_N = torch.randint(0, classes, (count,), generator=generator)
    tokens_NLD = torch.randn(count, 16, 32, generator=generator)
    where_N = torch.randint(0, 16, (count,), generator=generator)
    tokens_NLD[torch.arange(count), where_N] += centres_CD[labels_N]
    cls_ND = torch.randn(count, 32, generator=generator)
    images = SplitFeatures(cls_ND=cls_ND, z_NE=cls_ND, pred_NE=cls_ND, labels_N=labels_N)
    patches = PatchFeatures(tokens_NLD=tokens_NLD.half(), grid_hw=(4, 4),
                            masks_NHW=torch.zeros(count, 0, 0, dtype=torch.uint8))
    return images, patches


def _probe(*probes: str) -> LinearProbe:
    return LinearProbe(settings=LINEAR, probes=probes, mlp=MLP, attentive=ATTENTIVE)


def test_mlp_probe_reads_an_xor_that_the_linear_probe_cannot() -> None:
    source = StaticFeatures(images={"eval-train": _xor_split(600, 0), "eval-test": _xor_split(400, 1)})
    result = _probe("linear", "mlp").run(source, static_data(2))
    linear, mlp = result["probes"]["linear"], result["probes"]["mlp"]
    assert abs(linear["top1"] - 0.5) < 0.1  # XOR: chance for any linear readout
    assert mlp["top1"] > 0.85
    assert result["top1"] == linear["top1"]  # the headline stays the linear probe's
    assert mlp["settings"]["hidden"] == 64 and mlp["settings"]["classifier"].startswith("Linear -> GELU")
    assert linear["settings"]["lr"] == 0.1 and result["settings"]["probes"] == ["linear", "mlp"]


def test_attentive_probe_finds_a_class_held_by_one_patch_token() -> None:
    train, train_patches = _token_splits(512, 0)
    test, test_patches = _token_splits(256, 1)
    source = StaticFeatures(images={"eval-train": train, "eval-test": test},
                            patches={"eval-train": train_patches, "eval-test": test_patches})
    result = _probe("linear", "attentive").run(source, static_data(4))
    linear, attentive = result["probes"]["linear"], result["probes"]["attentive"]
    assert linear["top1"] < 0.4  # the CLS feature carries nothing: chance is 0.25
    assert attentive["top1"] > 0.9
    assert attentive["num_heads"] == 1 and attentive["settings"]["feature"] == "final-norm patch tokens"
    assert "patches:eval-train" in source.calls and "patches:eval-test" in source.calls
    # CLS features and patch tokens of both splits are read under the paper's probe geometry
    assert set(source.geometries) == {(name, PAPER_PROBE) for name in
                                      ("eval-train", "eval-test", "patches:eval-train", "patches:eval-test")}
    assert attentive["settings"]["geometry"] == PAPER_PROBE.describe()


def test_probes_are_deterministic_and_default_to_linear_only() -> None:
    source = StaticFeatures(images={"eval-train": _xor_split(200, 0), "eval-test": _xor_split(100, 1)})
    first = _probe("mlp").run(source, static_data(2))
    second = _probe("mlp").run(source, static_data(2))
    assert first["probes"]["mlp"]["top1"] == second["probes"]["mlp"]["top1"]
    assert "top1" not in first  # no linear probe asked for: no headline linear numbers
    assert set(LinearProbe().run(source, static_data(2))["probes"]) == {"linear"}


def test_probe_names_and_head_counts() -> None:
    assert check_probe_names(("all",)) == ("linear", "mlp", "attentive")
    assert check_probe_names(("mlp", "linear", "mlp")) == ("mlp", "linear")
    with pytest.raises(EvalError, match="unknown probe"):
        check_probe_names(("kernel",))
    assert (attention_heads(768, 0), attention_heads(64, 0), attention_heads(48, 5)) == (12, 1, 1)


def test_the_mlp_probe_standardises_batches_to_the_whole_split_numbers() -> None:
    """Each batch standardised as it is read gives the metrics of the whole split standardised
    up front (the probe's numbers from before), bit for bit."""
    train, test, settings = _xor_split(300, 2), _xor_split(200, 3), MLPProbeSettings(hidden=16, epochs=3)
    standardize = Standardizer.fit(train.cls_ND, settings.std_clamp)
    train_x, test_x = standardize(train.cls_ND), standardize(test.cls_ND)
    probe = seeded_module(settings.seed, lambda: MLPProbe(8, settings.hidden, 2))
    probe = train_classifier(probe, lambda b: train_x[b], train.labels_N,
                             HeadTraining.of(settings, schedule="cosine"), "cpu")
    expected = scored(probe, lambda b: train_x[b], train.labels_N, lambda b: test_x[b],
                      test.labels_N, 2, settings.batch_size)
    got = mlp_probe_metrics(train.cls_ND, train.labels_N, test.cls_ND, test.labels_N, 2, settings)
    assert got == expected
