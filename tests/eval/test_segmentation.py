"""Linear segmentation: mIoU by hand, a head that finds the mask in the tokens, chance on noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.errors import EvalDataError
from levl_eval.featureset import EvalSplit, PatchFeatures
from levl_eval.protocols.segmentation import (
    LinearSegmentation,
    SegmentationSettings,
    TokenStandardizer,
    downsample_labels,
    token_grid_logits,
)
from levl_eval.segmetrics import confusion_matrix, segmentation_metrics
from levl_eval.taskdata import SegmentationData
from levl_eval.testing import StaticFeatures

NUM_CLASSES, GRID, PATCH, DIM = 4, (8, 8), 4, 12
FAST = SegmentationSettings(epochs=8, batch_size=16)


def test_miou_equals_a_hand_computation() -> None:
    # rows = truth, columns = prediction
    confusion_CC = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    metrics = segmentation_metrics(confusion_CC)
    # class 0: 3 / (4 + 5 - 3) = 0.5; class 1: 4 / (6 + 5 - 4) = 4/7; class 2 absent -> left out
    assert metrics["miou"] == pytest.approx((0.5 + 4 / 7) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(7 / 10)
    assert metrics["classes_present"] == 2 and metrics["iou_per_class"][2] is None


def test_confusion_matrix_ignores_void_pixels() -> None:
    target = torch.tensor([[0, 1], [255, 1]])
    pred = torch.tensor([[0, 0], [1, 1]])
    assert confusion_matrix(pred, target, 2).tolist() == [[1, 0], [1, 1]]


def test_logits_are_permuted_before_the_reshape() -> None:
    head = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    tokens_BLD = torch.arange(8.0).reshape(1, 4, 2)  # tokens (0,1) (2,3) (4,5) (6,7)
    logits_BChw = token_grid_logits(head, tokens_BLD, (2, 2))
    assert logits_BChw[0, 0].tolist() == [[0.0, 2.0], [4.0, 6.0]]  # class 0 over space
    assert logits_BChw[0, 2].tolist() == [[1.0, 5.0], [9.0, 13.0]]


def _block_masks(count: int, seed: int) -> torch.Tensor:
    """Regions of 2x2 patches with one class each, and a void corner in every image."""
    generator = torch.Generator().manual_seed(seed)
    blocks_Nhw = torch.randint(0, NUM_CLASSES, (count, GRID[0] // 2, GRID[1] // 2), generator=generator)
    side = 2 * PATCH
    masks_NHW = blocks_Nhw.repeat_interleave(side, 1).repeat_interleave(side, 2).to(torch.uint8)
    masks_NHW[:, -3:, -3:] = 255  # not under a token's nearest sample (each patch's top-left)
    return masks_NHW


def _patches(masks_NHW: torch.Tensor, seed: int, signal: float) -> PatchFeatures:
    generator = torch.Generator().manual_seed(seed)
    labels_NL = downsample_labels(masks_NHW, GRID, "nearest").flatten(1)
    onehot_NLC = F.one_hot(labels_NL, NUM_CLASSES).float()
    tokens_NLD = torch.randn(*labels_NL.shape, DIM, generator=generator)
    tokens_NLD[..., :NUM_CLASSES] += signal * onehot_NLC
    return PatchFeatures(tokens_NLD=tokens_NLD, grid_hw=GRID, masks_NHW=masks_NHW)


def _run(signal: float, test_masks: torch.Tensor | None = None) -> dict:
    train_masks = _block_masks(96, seed=0)
    test_masks = _block_masks(32, seed=1) if test_masks is None else test_masks
    source = StaticFeatures(patches={"train": _patches(train_masks, 2, signal),
                                     "test": _patches(test_masks, 3, signal)})
    data = SegmentationData("toy", EvalSplit("train"), EvalSplit("test"),
                            tuple(f"c{i}" for i in range(NUM_CLASSES)))
    return LinearSegmentation(settings=FAST).run(source, data)


def test_label_outside_the_class_list_is_one_error_naming_the_split() -> None:
    masks_NHW = _block_masks(2, seed=1)
    masks_NHW[1, -1, -4] = NUM_CLASSES + 3  # a pixel no token samples (not a patch's top-left)
    with pytest.raises(EvalDataError, match="split test: label maps hold class id 7 but the dataset lists 4"):
        _run(signal=4.0, test_masks=masks_NHW)


def test_tokens_that_encode_the_mask_reach_high_miou() -> None:
    result = _run(signal=4.0)
    assert result["miou"] > 0.85 and result["pixel_accuracy"] > 0.9  # noise: 0.14, 0.25
    assert result["classes_present"] == NUM_CLASSES
    assert result["data"]["train"]["samples"] == 96 and result["data"]["test"]["grid"] == [8, 8]
    assert result["data"]["test"]["label_size"] == [32, 32]
    assert result["settings"]["epochs"] == 8 and result["settings"]["lr"] == 1e-2


def test_pure_noise_tokens_stay_near_chance() -> None:
    result = _run(signal=0.0)
    assert result["miou"] < 0.25  # random guessing gives 1/7, one fixed class 1/16
    assert result["pixel_accuracy"] < 0.4  # chance is 0.25


def test_default_settings_follow_the_paper() -> None:
    settings = LinearSegmentation().settings()
    assert (settings["lr"], settings["epochs"], settings["optimizer"]) == (1e-2, 30, "AdamW")


def test_token_standardizer_uses_every_train_token() -> None:
    tokens_NLD = torch.tensor([[[1.0, 5.0], [3.0, 5.0]], [[5.0, 5.0], [7.0, 5.0]]])
    standardize = TokenStandardizer.fit(tokens_NLD, std_clamp=1e-8, chunk=1)
    torch.testing.assert_close(standardize.mean_D, torch.tensor([4.0, 5.0]))
    torch.testing.assert_close(standardize.std_D, torch.tensor([5.0**0.5, 1e-8]))
