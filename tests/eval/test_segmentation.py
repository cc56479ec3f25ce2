"""Linear segmentation: mIoU by hand, a head that finds the mask in the tokens, chance on noise,
scoring on each label's full original frame, and labels sampled at the patch centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets import read_ade20k
from levl_eval.encoder import load_frozen_checkpoint
from levl_eval.errors import EvalDataError
from levl_eval.features.types import PatchFeatures
from levl_eval.geometry import FULL_FRAME, image_transform
from levl_eval.protocols.segmentation import protocol as segmentation
from levl_eval.protocols.segmentation.data import SegmentationData
from levl_eval.protocols.segmentation.metrics import confusion_matrix, segmentation_metrics
from levl_eval.protocols.segmentation.protocol import (
    LABEL_RESOLUTION,
    LinearSegmentation,
    SegmentationSettings,
    TokenStandardizer,
    downsample_labels,
    token_grid_logits,
)
from levl_eval.testing.worlds import (
    StaticFeatures,
    save_micro_checkpoint,
    write_ade20k_layout,
    write_image,
)
from levl_model.preprocess import Preprocess

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
    masks_NHW[:, :2, :2] = 255  # under no patch centre (pixels 4i + 2)
    return masks_NHW


def _patches(masks_NHW: torch.Tensor, seed: int, signal: float) -> PatchFeatures:
    generator = torch.Generator().manual_seed(seed)
    labels_NL = downsample_labels(masks_NHW, GRID, "nearest-exact").flatten(1).long()
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
    masks_NHW[1, -1, -4] = NUM_CLASSES + 3  # a pixel no token samples (not a patch's centre)
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
    standardize = TokenStandardizer.fit(tokens_NLD, std_clamp=1e-8, chunk_bytes=1)
    torch.testing.assert_close(standardize.mean_D, torch.tensor([4.0, 5.0]))
    torch.testing.assert_close(standardize.std_D, torch.tensor([5.0**0.5, 1e-8]))


def test_labels_reach_the_token_grid_at_the_patch_centres() -> None:
    # 3x3 patches on a 6x6 map whose pixel (y, x) holds 6y + x: each patch's centre pixel is
    # (3i + 1, 3j + 1); `nearest` would take its top-left (3i, 3j)
    mask_1HW = torch.arange(36).reshape(1, 6, 6)
    assert downsample_labels(mask_1HW, (2, 2), "nearest-exact")[0].tolist() == [[7, 10], [25, 28]]
    assert downsample_labels(mask_1HW, (2, 2), "nearest")[0].tolist() == [[0, 3], [18, 21]]
    assert SegmentationSettings().label_downsample == "nearest-exact"


def _raw_token_head(train: PatchFeatures, standardize: TokenStandardizer, *_args) -> nn.Linear:
    """A 'trained' head whose logits are the raw tokens: it undoes the standardisation."""
    dim = train.tokens_NLD.shape[-1]
    head = nn.Linear(dim, dim)
    with torch.no_grad():
        head.weight.copy_(torch.diag(standardize.std_D))
        head.bias.copy_(standardize.mean_D)
    return head


# A 1x2 token grid of 2 classes. Image 0: the left token says class 0, the right one class 1, so
# the logits upsampled bilinearly to a 12-wide frame favour class 0 on columns 0..5; its label (4x12,
# wider than a square crop) has class 0 on columns 0..2 only. Image 1 (6x6): class 1 everywhere.
FRAME_TOKENS_NLD = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [-1.0, 1.0]]])
WIDE_LABEL_HW = torch.tensor([[0] * 3 + [1] * 9] * 4, dtype=torch.uint8)
SQUARE_LABEL_HW = torch.ones(6, 6, dtype=torch.uint8)


def _score_frames(monkeypatch: pytest.MonkeyPatch, frame_maps: tuple[torch.Tensor, ...]) -> tuple[dict, StaticFeatures]:
    monkeypatch.setattr(segmentation, "train_segmentation_head", _raw_token_head)
    train = PatchFeatures(tokens_NLD=torch.randn(4, 2, 2), grid_hw=(1, 2),
                          masks_NHW=torch.zeros(4, 4, 8, dtype=torch.uint8))
    test = PatchFeatures(tokens_NLD=FRAME_TOKENS_NLD, grid_hw=(1, 2),
                         masks_NHW=torch.zeros(2, 0, 0, dtype=torch.uint8), frame_maps=frame_maps)
    source = StaticFeatures(patches={"train": train, "test": test})
    data = SegmentationData("toy", EvalSplit("train"), EvalSplit("test"), ("c0", "c1"))
    return LinearSegmentation(settings=FAST).run(source, data), source


def test_scores_each_label_on_its_full_original_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    result, source = _score_frames(monkeypatch, (WIDE_LABEL_HW, SQUARE_LABEL_HW))
    # class 0: truth 3x4 = 12, predicted 6x4 = 24, all 12 inside -> 1/2
    # class 1: truth 36 + 36, predicted 24 + 36, intersection 24 + 36 -> 60/72
    assert result["iou_per_class"] == pytest.approx([0.5, 5 / 6])
    assert result["miou"] == pytest.approx((0.5 + 5 / 6) / 2)
    assert result["pixel_accuracy"] == pytest.approx((12 + 24 + 36) / (48 + 36))
    assert result["data"]["test"]["label_size"] == {"min": [4, 6], "max": [6, 12], "distinct": 2}
    assert result["settings"]["label_resolution"] == LABEL_RESOLUTION
    assert LABEL_RESOLUTION == "full frame at the label's original resolution, bilinear logits"
    assert source.calls == ["patches:train", "frames:test"]  # the test split's untouched maps
    assert {geometry for _, geometry in source.geometries} == {FULL_FRAME}


def test_a_centre_crop_of_the_label_would_score_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    # the wide label's centre 4x4 (columns 4..7) is all class 1, and the logits stretched over 4
    # columns put class 0 on two of them: class 0 IoU 0, class 1 8/16 in that image
    cropped, _ = _score_frames(monkeypatch, (WIDE_LABEL_HW[:, 4:8], SQUARE_LABEL_HW))
    assert cropped["iou_per_class"] == pytest.approx([0.0, (8 + 36) / (16 + 36)])
    full, _ = _score_frames(monkeypatch, (WIDE_LABEL_HW, SQUARE_LABEL_HW))
    assert cropped["miou"] != pytest.approx(full["miou"])


def test_full_frame_geometry_shows_the_encoder_the_whole_frame() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 4, 20))  # a white band on the left tenth
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    whole_CHW, crop_CHW = image_transform(preprocess, True)(image), image_transform(preprocess, False)(image)
    assert whole_CHW.shape == crop_CHW.shape == (3, 8, 8)
    assert whole_CHW[:, :, 0].min() > 0.5 and crop_CHW.max() == 0.0  # the crop never sees the band


def test_a_checkpoint_is_scored_on_the_untouched_labels_of_mixed_sizes(tmp_path: Path) -> None:
    root = write_ade20k_layout(tmp_path / "datasets")
    val = root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png"
    wide_HW = np.zeros((20, 40), dtype=np.uint8)
    wide_HW[:, 30:] = 2  # class 1 after reduce_zero_label, on a frame wider than any square crop
    Image.fromarray(wide_HW).save(val)
    write_image(root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg", size=(40, 20))
    data = read_ade20k(root)
    encoder = load_frozen_checkpoint(save_micro_checkpoint(tmp_path / "ckpt"), device="cpu", batch_size=4)[0]
    test = encoder.patch_features(data.test, FULL_FRAME, frame_maps=True)
    assert [tuple(label.shape) for label in test.frame_maps] == [(16, 16), (20, 40)]
    assert test.frame_maps[1].tolist() == np.where(wide_HW == 0, 255, wide_HW - 1).tolist()
    assert test.masks_NHW.shape == (2, 0, 0) and test.grid_hw == (2, 2)
    assert encoder.patch_features(data.train, FULL_FRAME).masks_NHW.shape == (2, 32, 32)  # input size
    result = LinearSegmentation(settings=FAST).run(encoder, data)
    assert result["data"]["test"]["label_size"] == {"min": [16, 16], "max": [20, 40], "distinct": 2}
    assert result["classes_present"] == 2 and 0.0 <= result["miou"] <= 1.0
