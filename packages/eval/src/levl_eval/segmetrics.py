"""Segmentation metrics from a confusion matrix accumulated over the whole test set.

mIoU is averaged over the classes present in the ground truth (a class that never occurs has
no defined IoU; predicting it anyway still costs the classes it is confused with, through their
false positives/negatives). Void pixels (255) count nowhere.
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
    """TP / (TP + FP + FN) per class; NaN for a class absent from the ground truth."""
    confusion_CC = confusion_CC.double()
    tp_C = confusion_CC.diagonal()
    gt_C, pred_C = confusion_CC.sum(dim=1), confusion_CC.sum(dim=0)
    iou_C = tp_C / (gt_C + pred_C - tp_C).clamp_min(1)
    return torch.where(gt_C > 0, iou_C, torch.full_like(iou_C, float("nan")))


def segmentation_metrics(confusion_CC: torch.Tensor) -> dict:
    """mIoU over present classes, pixel accuracy, and how many classes were present."""
    iou_C = iou_per_class(confusion_CC)
    present_C = ~iou_C.isnan()
    total = int(confusion_CC.sum())
    return {
        "miou": iou_C[present_C].mean().item() if present_C.any() else float("nan"),
        "pixel_accuracy": confusion_CC.diagonal().sum().item() / total if total else float("nan"),
        "classes_present": int(present_C.sum()),
        "iou_per_class": [None if v != v else v for v in iou_C.tolist()],
    }
