"""Metrics equal a hand computation, including ties and classes absent from the labels."""

from __future__ import annotations

import pytest
import torch

from levl_eval.metrics import (
    classification_metrics,
    mean_per_class_recall,
    metrics_of_top_classes,
    top_classes,
    topk_accuracy,
)
from levl_eval.probes import batched_metrics

LOGITS_NC = torch.tensor(
    [
        [0.9, 0.1, 0.0, 0.0],  # label 0: rank 1
        [0.5, 0.4, 0.3, 0.0],  # label 1: rank 2
        [0.5, 0.4, 0.3, 0.2],  # label 3: rank 4
        [0.1, 0.2, 0.3, 0.4],  # label 3: rank 1
        [0.0, 0.9, 0.8, 0.0],  # label 2: rank 2
    ]
)
LABELS_N = torch.tensor([0, 1, 3, 3, 2])


def test_topk_matches_hand_count() -> None:
    assert topk_accuracy(LOGITS_NC, LABELS_N, 1) == pytest.approx(2 / 5)
    assert topk_accuracy(LOGITS_NC, LABELS_N, 2) == pytest.approx(4 / 5)
    assert topk_accuracy(LOGITS_NC, LABELS_N, 3) == pytest.approx(4 / 5)
    assert topk_accuracy(LOGITS_NC, LABELS_N, 4) == pytest.approx(1.0)


def test_top5_clamps_to_the_number_of_classes() -> None:
    metrics = classification_metrics(LOGITS_NC, LABELS_N)
    assert metrics["top5"] == pytest.approx(1.0)  # k = min(5, 4) = 4
    assert metrics["top1"] == pytest.approx(2 / 5)


def test_mean_per_class_recall_by_hand() -> None:
    # predictions: 0, 0, 0, 3, 1 -> class 0: 1/1, class 1: 0/1, class 2: 0/1, class 3: 1/2
    metrics = classification_metrics(LOGITS_NC, LABELS_N)
    assert metrics["mean_per_class_recall"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)


def test_mean_per_class_recall_skips_absent_classes() -> None:
    pred_N = torch.tensor([0, 0, 2, 1])
    labels_N = torch.tensor([0, 1, 1, 1])  # classes 2, 3 absent
    assert mean_per_class_recall(pred_N, labels_N, 4) == pytest.approx((1.0 + 1 / 3) / 2)


def test_mean_per_class_recall_differs_from_accuracy_on_imbalance() -> None:
    labels_N = torch.tensor([0] * 9 + [1])
    pred_N = torch.zeros(10, dtype=torch.long)
    assert mean_per_class_recall(pred_N, labels_N, 2) == pytest.approx(0.5)


def test_ties_go_to_the_lower_class_index() -> None:
    logits_NC = torch.zeros(4, 4)
    labels_N = torch.tensor([0, 1, 2, 3])
    metrics = classification_metrics(logits_NC, labels_N)
    assert metrics["top1"] == pytest.approx(0.25)
    assert metrics["mean_per_class_recall"] == pytest.approx(0.25)
    assert topk_accuracy(logits_NC, labels_N, 2) == pytest.approx(0.5)


def test_scoring_a_batch_at_a_time_keeps_only_the_best_classes_and_equals_the_whole() -> None:
    """Probes score large splits through batched_metrics (each row's top 5 classes, never the
    [N, C] logits): the numbers equal the hand-checked whole-logits ones, ties included."""
    generator = torch.Generator().manual_seed(0)
    for num_classes in (4, 12):
        probe = torch.nn.Linear(6, num_classes)
        x_ND = torch.randn(203, 6, generator=generator)
        x_ND[:20] = 0.0  # rows whose logits are all the bias: ties broken the same way
        labels_N = torch.randint(0, num_classes, (203,), generator=generator)
        with torch.no_grad():
            whole = classification_metrics(probe(x_ND), labels_N)
        batched = batched_metrics(probe, x_ND.__getitem__, labels_N, num_classes, 16)
        assert batched == whole
    top_NK = top_classes(LOGITS_NC)
    assert top_NK.shape == (5, 4) and metrics_of_top_classes(top_NK, LABELS_N, 4)["top1"] == pytest.approx(2 / 5)
