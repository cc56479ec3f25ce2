"""VQA normalisation, VQAv2 accuracy and POPE metrics against hand-computed values, and VQAv2
accuracy against an independent transcription of the official script's per-question loop."""

from __future__ import annotations

import copy
import random
import re

import pytest

from levl_eval.protocols.vlm.vqa_metrics import (
    exact_match,
    normalize_answer,
    pope_metrics,
    vqa_accuracy,
    vqa_accuracy_simple,
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
    ("1,000/day", "1000day"),          # ...and with one, every mark is deleted, not spaced
    ("dont", "don't"),                 # contractions get their apostrophe back
    ("isnt it", "isn't it"),
    ("it's", "it's"),                  # the apostrophe is no punctuation mark of the script
    ("its", "its"),                    # and "its" is in no table
    ("  Yes\n", "yes"),
])
def test_normalize_answer_follows_the_official_script(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(("prediction", "humans", "official", "simple"), [
    # two of ten humans agree: each of those two sees 1 other (1/3), the eight others see 2 (2/3)
    ("red", ["red"] * 2 + ["blue"] * 8, 0.6, 2 / 3),
    ("red", ["red"] * 1 + ["blue"] * 9, 0.3, 1 / 3),
    ("red", ["red"] * 3 + ["blue"] * 7, 0.9, 1.0),
    ("red", ["red"] * 4 + ["blue"] * 6, 1.0, 1.0),
    ("green", ["red"] * 4 + ["blue"] * 6, 0.0, 0.0),
    # the prediction's number words become digits...
    ("two", ["2"] * 10, 1.0, 1.0),
    ("Two", ["2"] * 2 + ["3"] * 8, 0.6, 2 / 3),
    # ...the humans' do not: their answers only lose punctuation, and only when they disagree
    ("2", ["two"] * 3 + ["three"] * 7, 0.0, 0.0),
    ("dont", ["don't"] * 10, 1.0, 1.0),
    ("dont", ["dont"] * 10, 0.0, 0.0),            # unanimous: the raw "dont" is compared
    ("it's", ["it's"] * 2 + ["its"] * 8, 0.6, 2 / 3),
    ("its", ["it's"] * 2 + ["its"] * 8, 1.0, 1.0),
    ("a dog", ["dog"] * 10, 1.0, 1.0),            # the prediction's article is dropped
    ("dog", ["a dog"] * 10, 0.0, 0.0),            # a human's is not
    ("the dog", ["a dog"] * 5 + ["dog"] * 5, 1.0, 1.0),
    ("yes.", ["yes"] * 10, 1.0, 1.0),             # trailing period of the prediction
    ("yes", ["yes."] * 2 + ["no"] * 8, 0.6, 2 / 3),  # a disagreeing human's period goes too
    ("yes", ["yes."] * 10, 0.0, 0.0),             # a unanimous one's stays
    ("1,000", ["1000"] * 10, 1.0, 1.0),           # comma inside a number
    ("1000", ["1,000"] * 2 + ["1000"] + ["500"] * 7, 0.9, 1.0),
    ("Red", ["red"] * 10, 1.0, 1.0),              # the prediction is lower-cased
    ("red", ["Red"] * 3 + ["blue"] * 7, 0.0, 0.0),  # a human's answer is not
    (" red\t", ["red"] * 2 + ["blue"] * 8, 0.6, 2 / 3),
])
def test_vqa_accuracy_on_the_official_scripts_tricky_cases(
    prediction: str, humans: list[str], official: float, simple: float
) -> None:
    assert vqa_accuracy(prediction, humans) == pytest.approx(official)
    assert vqa_accuracy_simple(prediction, humans) == pytest.approx(simple)


# --- An independent reference: the official script's per-question evaluation, transcribed from
# GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (VQAEval.evaluate,
# processPunctuation, processDigitArticle) in its own structure: answers are dicts with an
# answer_id, disagreeing answers are rewritten in place, each human is left out by identity.
# Only the contractions the random vocabulary below can produce are listed.
REF_CONTRACTIONS = {"dont": "don't", "isnt": "isn't", "whats": "what's", "cant": "can't"}
REF_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                  "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
REF_ARTICLES = ["a", "an", "the"]
REF_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
REF_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
REF_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
             "`", ",", "?", "!"]


def ref_process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in REF_PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(REF_COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return REF_PERIOD_STRIP.sub("", out_text, re.UNICODE)


def ref_process_digit_article(in_text: str) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = REF_MANUAL_MAP.setdefault(word, word)
        if word not in REF_ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in REF_CONTRACTIONS:
            out_text[word_id] = REF_CONTRACTIONS[word]
    return " ".join(out_text)


def ref_question_accuracy(res_ans: str, gt_answers: list[dict]) -> float:
    """One question of VQAEval.evaluate: the mean of gtAcc."""
    gts = copy.deepcopy(gt_answers)
    res_ans = res_ans.replace("\n", " ").replace("\t", " ").strip()
    res_ans = ref_process_digit_article(ref_process_punctuation(res_ans))
    if len({ans["answer"] for ans in gts}) > 1:
        for ans_dic in gts:
            ans_dic["answer"] = ref_process_punctuation(ans_dic["answer"])
    gt_acc = []
    for gt_ans_datum in gts:
        other_gt_ans = [item for item in gts if item != gt_ans_datum]
        matching_ans = [item for item in other_gt_ans if item["answer"] == res_ans]
        gt_acc.append(min(1, float(len(matching_ans)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


VOCABULARY = ("2", "two", "Two", "3", "three", "yes", "yes.", "Yes", "no", "No!", "a dog", "dog",
              "the dog", "Dog", "1,000", "1000", "it's", "its", "dont", "don't", "isnt", "whats",
              "black/white", "black white", "black-white", "red!", "red", "2.5", "e.g.",
              "hello !", "none", "0", "ten", "10", "(a) cat", "cat?")


def random_question(rng: random.Random) -> tuple[str, list[str]]:
    """Ten human answers over a few candidates (unanimous about one time in six) and a
    prediction, sometimes padded or spread over lines as a generator might emit it."""
    candidates = rng.sample(VOCABULARY, rng.choice((1, 1, 2, 3, 4, 6)))
    weights = [rng.random() + 0.05 for _ in candidates]
    humans = rng.choices(candidates, weights=weights, k=10)
    prediction = rng.choice((*candidates, *rng.sample(VOCABULARY, 2)))
    return rng.choice(("{}", " {} ", "{}\n", "\t{}")).format(prediction), humans


def test_vqa_accuracy_equals_the_official_loop_on_random_answer_sets() -> None:
    rng = random.Random(0)
    scores = []
    for _ in range(400):
        prediction, humans = random_question(rng)
        gt = [{"answer": answer, "answer_id": index + 1} for index, answer in enumerate(humans)]
        expected = ref_question_accuracy(prediction, gt)
        assert vqa_accuracy(prediction, humans) == pytest.approx(expected), (prediction, humans)
        scores.append(expected)
    assert len({round(score, 6) for score in scores}) >= 5  # the sets reach many accuracy levels


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
