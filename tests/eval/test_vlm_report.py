"""The vlm tasks' headline rows: GQA exact match, VQAv2 accuracy (official and min(1, n/3)) and
POPE F1, each with its gain over the random encoder as gains.py computes it."""

from __future__ import annotations

import pytest

from levl_eval.gains import add_gains_over_random
from levl_eval.report import headline_table

RESULTS = {  # checkpoint, random baseline
    "vlm:gqa": ({"exact_match": 0.50, "vqa_accuracy": 0.52}, {"exact_match": 0.40, "vqa_accuracy": 0.41}),
    "vlm:vqav2": ({"vqa_accuracy": 0.60, "vqa_accuracy_simple": 0.62, "exact_match": 0.5},
                  {"vqa_accuracy": 0.45, "vqa_accuracy_simple": 0.47, "exact_match": 0.4}),
    "vlm:pope": ({"pope_f1": 0.80, "pope_accuracy": 0.78}, {"pope_f1": 0.60, "pope_accuracy": 0.61}),
}


def vlm_report() -> dict:
    checkpoint = {"name": "ckpt", "protocols": {task: dict(pair[0]) for task, pair in RESULTS.items()}}
    baseline = {"name": "random", "baseline_for": ["ckpt"],
                "protocols": {task: dict(pair[1]) for task, pair in RESULTS.items()}}
    entries = [checkpoint, baseline]
    add_gains_over_random(entries)
    return {"protocols": list(RESULTS), "encoders": entries}


def test_gains_over_random_of_each_vlm_headline_metric() -> None:
    checkpoint = vlm_report()["encoders"][0]["protocols"]
    assert checkpoint["vlm:gqa"]["gain_over_random"]["exact_match"] == pytest.approx(0.10)
    assert checkpoint["vlm:vqav2"]["gain_over_random"]["vqa_accuracy"] == pytest.approx(0.15)
    assert checkpoint["vlm:pope"]["gain_over_random"]["pope_f1"] == pytest.approx(0.20)


def test_each_vlm_task_shows_its_own_metric_and_gain() -> None:
    header, rows = headline_table(vlm_report())
    assert header == ["metric", "ckpt", "random"]
    assert rows == [
        ["exact match (gqa)", "50.00", "40.00"],
        ["exact match gain vs random (gqa)", "10.00", "—"],
        ["VQA acc (vqav2)", "60.00", "45.00"],
        ["VQA acc min(1,n/3) (vqav2)", "62.00", "47.00"],
        ["VQA gain vs random (vqav2)", "15.00", "—"],
        ["POPE F1 (pope)", "80.00", "60.00"],
        ["POPE acc (pope)", "78.00", "61.00"],
        ["POPE F1 gain vs random (pope)", "20.00", "—"],
    ]
