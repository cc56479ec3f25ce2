"""VQA normalisation, VQAv2 accuracy and POPE metrics against hand-computed values."""

from __future__ import annotations

import pytest

from levl_eval.vqa_metrics import (
    exact_match,
    normalize_answer,
    pope_metrics,
    vqa_accuracy,
    vqa_accuracy_official,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("Two", "2"),                      # number words → digits, lower case
    ("none", "0"),
    ("ten dogs", "10 dogs"),
    ("The red ball", "red ball"),      # articles dropped
    ("a dog and an apple", "dog and apple"),
    ("yes.", "yes"),                   # a final period is stripped...
    ("2.5", "2.5"),                    # ...but not a decimal point
    ("black/white", "black white"),    # a mark between words becomes a space
    ("hello !", "hello"),              # a mark beside a space is deleted
    ("1,000", "1000"),                 # digit commas are deleted
    ("dont", "don't"),                 # contractions get their apostrophe back
    ("isnt it", "isn't it"),
    ("  Yes\n", "yes"),
])
def test_normalize_answer_follows_the_official_script(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_vqa_accuracy_with_ten_humans() -> None:
    humans = ["2"] * 2 + ["two"] + ["3"] * 6 + ["4"]
    assert vqa_accuracy("2", humans) == 1.0          # 3 humans (after normalisation) / 3
    assert vqa_accuracy("Four", humans) == pytest.approx(1 / 3)
    assert vqa_accuracy("5", humans) == 0.0
    assert vqa_accuracy("3", humans) == 1.0
    # official leave-one-out: 3 matching humans see 2 others (2/3), 7 others see 3 (1)
    assert vqa_accuracy_official("2", humans) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert vqa_accuracy_official("4", humans) == pytest.approx((1 * 0 + 9 * 1 / 3) / 10)


def test_exact_match_normalises_both_sides() -> None:
    assert exact_match("The Red.", "red") == 1.0
    assert exact_match("blue", "red") == 0.0


def test_pope_metrics_on_a_hand_made_list() -> None:
    predicted = [True, True, True, False, False, True, False, False]
    truth = [True, True, False, True, False, False, False, False]
    # tp=2 fp=2 fn=1 tn=3
    metrics = pope_metrics(predicted, truth)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["precision"] == pytest.approx(2 / 4)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics["yes_ratio"] == pytest.approx(4 / 8)
    assert metrics["num_questions"] == 8
