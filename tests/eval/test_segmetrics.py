"""mIoU and aAcc as mmsegmentation computes them: by hand on tiny maps, and against an independent
re-implementation of mmseg's `IoUMetric.intersect_and_union` + `total_area_to_metrics`
(mmseg/evaluation/metrics/iou_metric.py; mmseg itself is not installed here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from levl_eval.protocols.segmentation.metrics import VOID, confusion_matrix, segmentation_metrics

# Two 2x4 images over 4 classes. Class 2 is predicted (image B) but in no ground truth; class 3
# is neither; image A's two void pixels are predicted as class 2 and must count nowhere.
TARGET_A = torch.tensor([[0, 0, 0, 0], [1, 1, VOID, VOID]])
PRED_A = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 2]])
TARGET_B = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1]])
PRED_B = torch.tensor([[1, 1, 1, 1], [1, 1, 2, 0]])


def _metrics(*pairs: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """One confusion matrix summed over the images, as the protocol accumulates it."""
    return segmentation_metrics(sum(confusion_matrix(pred, target, 4) for pred, target in pairs))


def test_miou_sums_areas_over_images_ignores_void_and_scores_predicted_absent_classes() -> None:
    metrics = _metrics((PRED_A, TARGET_A), (PRED_B, TARGET_B))
    # class 0: truth 4, predicted 3 + 1, intersection 3 -> 3 / (4 + 4 - 3) = 0.6
    # class 1: truth 2 + 8, predicted 3 + 6, intersection 2 + 6 -> 8 / (10 + 9 - 8) = 8/11
    # class 2: truth 0, predicted 1 (A's two are on void) -> union 1, IoU 0, counted
    # class 3: union 0 -> NaN, left out of the mean
    assert metrics["iou_per_class"] == pytest.approx([0.6, 8 / 11, 0.0, None])
    assert metrics["miou"] == pytest.approx((0.6 + 8 / 11 + 0.0) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx((3 + 8) / (4 + 10))  # aAcc: void excluded
    assert (metrics["classes_present"], metrics["classes_scored"]) == (2, 3)


def test_accumulating_over_the_split_differs_from_averaging_images() -> None:
    per_image = [_metrics((PRED_A, TARGET_A))["miou"], _metrics((PRED_B, TARGET_B))["miou"]]
    # A: (3/4 + 2/3) / 2 (class 2 only on void: union 0); B: (0 + 6/8 + 0) / 3
    assert per_image == pytest.approx([(0.75 + 2 / 3) / 2, 0.25])
    accumulated = _metrics((PRED_A, TARGET_A), (PRED_B, TARGET_B))["miou"]
    assert accumulated == pytest.approx(0.4424, abs=1e-4) and sum(per_image) / 2 == pytest.approx(0.4792, abs=1e-4)


def _mmseg_intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int,
                               ignore_index: int) -> tuple[np.ndarray, ...]:
    """mmseg's IoUMetric.intersect_and_union, with np.histogram for torch.histc (same bins:
    `num_classes` over [0, num_classes - 1], the last one closed)."""
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]

    def histc(values: np.ndarray) -> np.ndarray:
        return np.histogram(values, bins=num_classes, range=(0, num_classes - 1))[0].astype(np.float64)

    area_intersect, area_pred, area_label = histc(intersect), histc(pred), histc(label)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def _mmseg_total_area_to_metrics(results: list[tuple[np.ndarray, ...]]) -> dict:
    """mmseg's compute_metrics for ['mIoU']: areas summed over images, aAcc, IoU, nanmean."""
    intersect, union, _, label = (sum(parts) for parts in zip(*results, strict=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
    return {"aAcc": intersect.sum() / label.sum(), "IoU": iou, "mIoU": np.nanmean(iou)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_mmsegmentations_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes, results, confusion_CC = 12, [], torch.zeros(12, 12, dtype=torch.long)
    for height, width in ((7, 9), (16, 5), (11, 11)):  # frames of different sizes
        label = rng.integers(0, 8, size=(height, width))  # classes 8.. never in the ground truth
        label[rng.random((height, width)) < 0.2] = VOID
        pred = rng.integers(0, 10, size=(height, width))  # 8, 9 predicted only; 10, 11 nowhere
        results.append(_mmseg_intersect_and_union(pred, label, num_classes, VOID))
        confusion_CC += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), num_classes)
    expected, ours = _mmseg_total_area_to_metrics(results), segmentation_metrics(confusion_CC)
    assert ours["miou"] == pytest.approx(expected["mIoU"], rel=1e-12)
    assert ours["pixel_accuracy"] == pytest.approx(expected["aAcc"], rel=1e-12)
    iou = np.array([np.nan if v is None else v for v in ours["iou_per_class"]])
    np.testing.assert_allclose(iou, expected["IoU"], rtol=1e-12)  # NaN where mmseg has NaN
    assert np.isnan(iou[10:]).all() and (iou[8:10] == 0).all()
