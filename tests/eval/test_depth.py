"""Linear depth: metrics by hand, a head that reads depth from the tokens, no gain on noise, and
scoring on each map's full original frame."""

from __future__ import annotations

import math

import pytest
import torch

from levl_eval.data.splits import EvalSplit
from levl_eval.errors import EvalDataError
from levl_eval.features.types import PatchFeatures
from levl_eval.geometry import FULL_FRAME
from levl_eval.protocols.depth import protocol as depth
from levl_eval.protocols.depth.data import DepthData
from levl_eval.protocols.depth.metrics import per_image_depth_errors, summarize_depth_errors
from levl_eval.protocols.depth.protocol import (
    DepthSettings,
    LinearDepth,
    bin_centres,
    predict_depth,
)
from levl_eval.standardize import TokenStandardizer
from levl_eval.testing.worlds import StaticFeatures

GRID, PATCH, DIM = (8, 8), 4, 12
FAST = DepthSettings(epochs=8, batch_size=16, num_bins=64)


def test_depth_metrics_equal_a_hand_computation() -> None:
    pred = torch.tensor([[[2.0, 1.0], [4.0, 0.5]],   # image 0
                         [[1.0, 1.0], [1.0, 1.0]],   # image 1: no valid pixel
                         [[3.0, 3.0], [3.0, 20.0]]])  # image 2: exact, 20 clamped to 10
    target = torch.tensor([[[1.0, 1.0], [5.0, 0.0]],
                           [[0.0, 0.0], [11.0, 0.0]],
                           [[3.0, 3.0], [3.0, 10.0]]])
    errors = per_image_depth_errors(pred, target, min_depth=1e-3, max_depth=10.0)
    # image 0 over its 3 valid pixels: squared errors 1, 0, 1; relative 1, 0, 1/5; ratios 2, 1,
    # 1.25 (not < 1.25)
    assert errors["rmse"].tolist() == pytest.approx([math.sqrt(2 / 3), 0.0])
    assert errors["abs_rel"].tolist() == pytest.approx([1.2 / 3, 0.0])
    assert errors["delta1"].tolist() == pytest.approx([1 / 3, 1.0])
    summary = summarize_depth_errors([errors], images_seen=3)
    assert summary["rmse"] == pytest.approx(math.sqrt(2 / 3) / 2)
    assert summary["abs_rel"] == pytest.approx(0.2) and summary["delta1"] == pytest.approx(2 / 3)
    assert (summary["images_scored"], summary["images_without_valid_depth"]) == (2, 1)


def test_bins_are_log_spaced_and_prediction_is_their_expectation() -> None:
    centres = bin_centres(DepthSettings(num_bins=3, bin_min_depth=0.1), max_depth=10.0)
    torch.testing.assert_close(centres, torch.tensor([0.1, 1.0, 10.0]))
    head = torch.nn.Linear(1, 3)
    with torch.no_grad():  # token value v -> logits (0, 0, v): v = 0 gives the plain mean
        head.weight.copy_(torch.tensor([[0.0], [0.0], [1.0]]))
        head.bias.zero_()
    tokens = torch.tensor([[[0.0], [math.log(2.0)]]])  # 2 tokens on a 1x2 grid
    depth = predict_depth(head, tokens, (1, 2), centres, (1, 2))
    torch.testing.assert_close(depth, torch.tensor([[[11.1 / 3, (1.1 + 20.0) / 4]]]))


def _log_depth(count: int, seed: int, side: int) -> torch.Tensor:
    """Smooth scenes: log depth = a + b*y + c*x over the unit square, sampled side x side."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.empty(count, 1, 1).uniform_(0.2, 1.2, generator=generator)
    b, c = torch.empty(2, count, 1, 1).uniform_(-0.8, 0.8, generator=generator)
    axis = (torch.arange(side) + 0.5) / side
    return a + b * axis[:, None] + c * axis[None, :]


def _patches(count: int, seed: int, signal: float) -> PatchFeatures:
    """Tokens whose first dimension is signal x the log depth at the token's centre, plus noise;
    depth maps at 4x the token grid with the top 3 rows unmeasured (0)."""
    depth_NHW = _log_depth(count, seed, GRID[0] * PATCH).exp()
    depth_NHW[:, :3] = 0.0
    tokens_NLD = torch.randn(count, GRID[0] * GRID[1], DIM, generator=torch.Generator().manual_seed(seed + 9))
    tokens_NLD[..., 0] += signal * _log_depth(count, seed, GRID[0]).flatten(1)
    return PatchFeatures(tokens_NLD=tokens_NLD, grid_hw=GRID, masks_NHW=depth_NHW)


def _run(signal: float) -> dict:
    source = StaticFeatures(patches={"train": _patches(96, 0, signal), "test": _patches(32, 1, signal)})
    data = DepthData("toy", EvalSplit("train"), EvalSplit("test"))
    return LinearDepth(settings=FAST).run(source, data)


def test_tokens_that_encode_depth_beat_the_mean_depth() -> None:
    result = _run(signal=4.0)
    baseline = result["mean_depth_baseline"]
    assert result["rmse"] < 0.6 * baseline["rmse"]  # measured: 0.40 vs 0.87
    assert result["abs_rel"] < 0.5 * baseline["abs_rel"] and result["delta1"] > baseline["delta1"] + 0.3
    assert result["images_scored"] == 32 and result["data"]["test"]["label_size"] == [32, 32]
    assert result["settings"]["num_bins"] == 64 and result["settings"]["loss"].startswith("scale-invariant")


def test_noise_tokens_do_not_beat_the_mean_depth() -> None:
    result = _run(signal=0.0)
    baseline = result["mean_depth_baseline"]
    assert result["rmse"] > 0.97 * baseline["rmse"]  # measured: 0.90 vs 0.87
    assert result["delta1"] < baseline["delta1"] + 0.03


def test_default_settings_follow_method_md() -> None:
    settings = LinearDepth().settings()
    assert (settings["num_bins"], settings["epochs"], settings["optimizer"]) == (256, 30, "AdamW")
    assert "log-spaced" in settings["bins"] and "bilinearly" in settings["prediction"]


def test_label_maps_instead_of_depth_are_an_error() -> None:
    patches = PatchFeatures(tokens_NLD=torch.zeros(2, 4, 3), grid_hw=(2, 2),
                            masks_NHW=torch.zeros(2, 4, 4, dtype=torch.uint8))
    source = StaticFeatures(patches={"train": patches, "test": patches})
    with pytest.raises(EvalDataError, match="split train: has no depth maps"):
        LinearDepth(settings=FAST).run(source, DepthData("toy", EvalSplit("train"), EvalSplit("test")))


def _two_bin_head(train: PatchFeatures, standardize: TokenStandardizer, *_args) -> torch.nn.Linear:
    """A 'trained' head giving logits (0, raw token value) over the two bins."""
    head = torch.nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0], [standardize.std_D.item()]]))
        head.bias.copy_(torch.tensor([0.0, standardize.mean_D.item()]))
    return head


def test_depth_is_scored_on_each_maps_full_original_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # bins at 1 m and 4 m (max depth 4); token value 0 gives logits (0, 0): 2.5 m everywhere
    monkeypatch.setattr(depth, "train_depth_head", _two_bin_head)
    wide_HW = torch.full((2, 8), 2.5)
    wide_HW[:, :2] = 1.25  # outside its centre 2x2 crop: the head is 1.25 m off there, ratio 2
    square_HW = torch.full((4, 4), 2.5)
    square_HW[0, 0] = 0.0  # unmeasured
    train = PatchFeatures(tokens_NLD=torch.randn(3, 2, 1), grid_hw=(1, 2), masks_NHW=torch.full((3, 2, 2), 2.0))
    test = PatchFeatures(tokens_NLD=torch.zeros(2, 2, 1), grid_hw=(1, 2),
                         masks_NHW=torch.zeros(2, 0, 0), frame_maps=(wide_HW, square_HW))
    source = StaticFeatures(patches={"train": train, "test": test})
    data = DepthData("toy", EvalSplit("train"), EvalSplit("test"), max_depth=4.0)
    result = LinearDepth(settings=DepthSettings(epochs=1, num_bins=2, bin_min_depth=1.0)).run(source, data)
    # wide: 4 of its 16 pixels off (a centre crop would score it perfect); square: 15 exact
    assert result["rmse"] == pytest.approx((math.sqrt(4 * 1.25**2 / 16) + 0.0) / 2)
    assert result["abs_rel"] == pytest.approx((4 * 1.0 / 16 + 0.0) / 2)
    assert result["delta1"] == pytest.approx((12 / 16 + 1.0) / 2)
    assert result["images_scored"] == 2 and result["data"]["test"]["label_size"]["distinct"] == 2
    assert source.calls == ["patches:train", "frames:test"]
    assert {geometry for _, geometry in source.geometries} == {FULL_FRAME}
    assert result["settings"]["label_resolution"].startswith("full frame at the label's original resolution")
