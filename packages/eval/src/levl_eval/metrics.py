"""Classification metrics shared by every protocol.

Ties are broken towards the lower class index (stable sort), so a degenerate encoder that gives
every class the same score predicts one fixed class and scores exactly chance on mean per-class
recall instead of an accidental, platform-dependent number.
"""

from __future__ import annotations

import torch


def ranked_classes(logits_NC: torch.Tensor) -> torch.Tensor:
    """Class indices per row, best first, ties broken by the lower index (deterministic)."""
    return torch.sort(logits_NC, dim=1, descending=True, stable=True).indices


def hit_rate(top_NK: torch.Tensor, labels_N: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among their first k ranked classes (nan for no rows)."""
    if len(labels_N) == 0:
        return float("nan")
    return (top_NK[:, :k] == labels_N[:, None]).any(dim=1).float().mean().item()


def topk_accuracy(logits_NC: torch.Tensor, labels_N: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the k best-scored classes."""
    return hit_rate(ranked_classes(logits_NC), labels_N, k)


def mean_per_class_recall(pred_N: torch.Tensor, labels_N: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes present in `labels_N` of the recall of that class.

    Classes absent from the evaluation labels are left out (their recall is undefined), as in
    the usual "mean per-class accuracy" of Pets/Aircraft-style benchmarks.
    """
    counts_C = torch.bincount(labels_N, minlength=num_classes)
    correct_C = torch.bincount(labels_N[pred_N == labels_N], minlength=num_classes)
    present_C = counts_C > 0
    if not present_C.any():
        return float("nan")
    recall_C = correct_C[present_C].double() / counts_C[present_C].double()
    return recall_C.mean().item()


TOP_K = 5  # the largest k any headline reads (top-5)


def top_classes(logits_NC: torch.Tensor) -> torch.Tensor:
    """Each row's min(TOP_K, C) best classes, best first (ties to the lower index): all that
    `classification_metrics` reads, so a large split can be scored a batch at a time."""
    return ranked_classes(logits_NC)[:, :TOP_K]


def metrics_of_top_classes(top_NK: torch.Tensor, labels_N: torch.Tensor,
                           num_classes: int) -> dict[str, float]:
    """top1, top5 (k = min(5, C)) and mean per-class recall from each row's best classes."""
    return {
        "top1": hit_rate(top_NK, labels_N, 1),
        "top5": hit_rate(top_NK, labels_N, TOP_K),
        "mean_per_class_recall": mean_per_class_recall(top_NK[:, 0], labels_N, num_classes),
    }


def classification_metrics(logits_NC: torch.Tensor, labels_N: torch.Tensor) -> dict[str, float]:
    """top1, top5 (k = min(5, C)) and mean per-class recall of one set of logits."""
    return metrics_of_top_classes(top_classes(logits_NC), labels_N, logits_NC.shape[1])
