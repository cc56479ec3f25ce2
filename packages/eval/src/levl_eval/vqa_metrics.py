"""VQA-style answer scoring (METHOD.md, "Frozen VLM backbone"): VQAv2 accuracy, GQA exact match,
POPE yes/no metrics.

`normalize_answer` reproduces the official VQA evaluation script's answer processing
(vqaEval.py: processPunctuation then processDigitArticle), so numbers compare with published
ones: punctuation removed or turned into spaces, lower case, number words zero..ten → digits,
articles dropped, apostrophe-less contractions restored. One deliberate difference: the official
script normalises only when the ten human answers disagree; we always normalise (LLaVA's
evaluator does the same), so "Two" scores like "2" even on a unanimous question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The official script's tables (same content, written out here).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")
# Verbatim from the official script, including its "(?!<=" (meant as a look-behind): a period
# is stripped unless a digit follows it ("2.5" keeps its point, "yes." loses it).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")


def strip_punctuation(text: str) -> str:
    """processPunctuation: a mark next to a space (or any text with a digit comma) is deleted,
    otherwise it becomes a space ("black/white" → "black white")."""
    out = text
    delete = COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if delete or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out)


def digits_and_articles(text: str) -> str:
    """processDigitArticle: lower case, number words → digits, no articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official VQA normalisation of one answer (also used for GQA exact match)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return digits_and_articles(strip_punctuation(text))


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """METHOD.md's VQAv2 accuracy: min(1, #humans who gave the predicted answer / 3)."""
    predicted = normalize_answer(prediction)
    matches = sum(normalize_answer(answer) == predicted for answer in human_answers)
    return min(1.0, matches / 3)


def vqa_accuracy_official(prediction: str, human_answers: Sequence[str]) -> float:
    """The official script's variant: the min(1, matches / 3) of each leave-one-human-out
    subset of the answers, averaged (3 agreeing humans give 0.9, not 1)."""
    predicted = normalize_answer(prediction)
    hits = [normalize_answer(answer) == predicted for answer in human_answers]
    total = sum(hits)
    return sum(min(1.0, (total - hit) / 3) for hit in hits) / len(hits)


def exact_match(prediction: str, answer: str) -> float:
    """GQA accuracy: 1.0 when the normalised prediction equals the normalised answer."""
    return float(normalize_answer(prediction) == normalize_answer(answer))


def pope_metrics(predicted_yes: Sequence[bool], truly_yes: Sequence[bool]) -> dict:
    """POPE's numbers with "yes" as the positive class; yes_ratio shows a yes-bias."""
    pairs = list(zip(predicted_yes, truly_yes, strict=True))
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    fn = sum(t and not p for p, t in pairs)
    total = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": sum(p == t for p, t in pairs) / total if total else float("nan"),
        "precision": precision, "recall": recall, "f1": f1,
        "yes_ratio": (tp + fp) / total if total else float("nan"),
        "num_questions": total,
    }
