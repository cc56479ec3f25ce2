"""Segmentation metrics as mmsegmentation's `IoUMetric` computes them (mmseg/evaluation/metrics/
iou_metric.py: `intersect_and_union` per image, summed over the val set, `total_area_to_metrics`).

One confusion matrix is accumulated over the whole test set (never averaged per image); void
pixels (255) count nowhere. From it, per class: intersection = the diagonal, prediction and
ground-truth areas = its column and row sums, union = prediction + ground truth - intersection.
IoU = intersection / union, NaN where the union is 0 (a class neither in the ground truth nor
predicted); mIoU is the mean over the other classes (mmseg's nanmean), so a class predicted but
absent from the ground truth counts with IoU 0. Pixel accuracy is mmseg's aAcc: intersections
over all ground-truth pixels. Values are fractions (mmseg reports them x100).
"""

from __future__ import annotations

import torch

VOID = 255


def confusion_matrix(
    pred_P: torch.Tensor, target_P: torch.Tensor, num_classes: int, void: int = VOID
) -> torch.Tensor:
    """[C, C] int64 counts, rows = ground truth, columns = prediction; void targets dropped."""
    target_P, pred_P = target_P.reshape(-1).long(), pred_P.reshape(-1).long()
    keep_P = target_P != void
    if keep_P.any() and int(target_P[keep_P].max()) >= num_classes:
        raise ValueError(f"label {int(target_P[keep_P].max())} outside 0..{num_classes - 1}")
    index_P = target_P[keep_P] * num_classes + pred_P[keep_P]
    return torch.bincount(index_P, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion_CC: torch.Tensor) -> torch.Tensor:
    """TP / (TP + FP + FN) per class; NaN where that union is 0 (mmseg's 0/0)."""
    confusion_CC = confusion_CC.double()
    tp_C = confusion_CC.diagonal()
    union_C = confusion_CC.sum(dim=1) + confusion_CC.sum(dim=0) - tp_C
    return torch.where(union_C > 0, tp_C / union_C.clamp_min(1), torch.full_like(tp_C, float("nan")))


def segmentation_metrics(confusion_CC: torch.Tensor) -> dict:
    """mIoU over the classes with a union, aAcc, and how many classes were present / scored."""
    iou_C = iou_per_class(confusion_CC)
    scored_C = ~iou_C.isnan()
    total = int(confusion_CC.sum())
    return {
        "miou": iou_C[scored_C].mean().item() if scored_C.any() else float("nan"),
        "pixel_accuracy": confusion_CC.diagonal().sum().item() / total if total else float("nan"),
        "classes_present": int((confusion_CC.sum(dim=1) > 0).sum()),
        "classes_scored": int(scored_C.sum()),
        "iou_per_class": [None if v != v else v for v in iou_C.tolist()],
    }
