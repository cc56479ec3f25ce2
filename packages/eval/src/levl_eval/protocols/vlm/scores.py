"""The `vlm` protocol's numbers from its answers: open-ended (VQA accuracy, exact match, per
question type) and yes/no existence (POPE metrics per negative kind)."""

from __future__ import annotations

from collections import defaultdict

from levl_eval.protocols.vlm.items import QAItem
from levl_eval.protocols.vlm.vqa_metrics import (
    exact_match,
    pope_metrics,
    vqa_accuracy,
    vqa_accuracy_simple,
)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def humans(item: QAItem) -> tuple[str, ...]:
    """A single stored answer (synthetic world, GQA) counts as ten agreeing humans."""
    return item.answers if len(item.answers) > 1 else item.answers * 10


def open_scores(items: list[QAItem], predictions: list[str]) -> dict:
    """VQA accuracy (the official script's, and min(1, n/3) beside it) and exact match, overall
    and per type."""
    rows = [(item.kind, vqa_accuracy(pred, humans(item)), vqa_accuracy_simple(pred, humans(item)),
             exact_match(pred, item.target)) for item, pred in zip(items, predictions, strict=True)]
    by_type: dict[str, list] = defaultdict(list)
    for row in rows:
        by_type[row[0]].append(row)

    def summary(group: list) -> dict:
        return {"vqa_accuracy": mean([r[1] for r in group]),
                "vqa_accuracy_simple": mean([r[2] for r in group]),
                "exact_match": mean([r[3] for r in group]), "num_questions": len(group)}

    return {**summary(rows), "by_type": {kind: summary(group) for kind, group in sorted(by_type.items())}}


def pope_scores(items: list[QAItem], said_yes: list[bool]) -> dict:
    """POPE metrics per negative kind (random / popular / adversarial) and their means."""
    splits: dict[str, tuple[list[bool], list[bool]]] = defaultdict(lambda: ([], []))
    for item, yes in zip(items, said_yes, strict=True):
        predicted, truth = splits[item.pope or "all"]
        predicted.append(yes)
        truth.append(item.target.strip().lower() == "yes")
    per_split = {name: pope_metrics(*pair) for name, pair in sorted(splits.items())}
    means = {f"pope_{key}": mean([m[key] for m in per_split.values()])
             for key in ("accuracy", "precision", "recall", "f1", "yes_ratio")}
    return {**means, "pope": per_split}


def example_answers(items: list[QAItem], predictions: list[str], count: int = 8) -> list[dict]:
    """A few (question, target, prediction) triples for the report, to eyeball failures."""
    return [{"question": item.question, "answer": item.target, "prediction": pred}
            for item, pred in list(zip(items, predictions, strict=True))[:count]]
