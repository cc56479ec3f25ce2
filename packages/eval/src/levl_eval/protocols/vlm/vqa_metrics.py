"""VQA-style answer scoring (METHOD.md, "Frozen VLM backbone"): VQAv2 accuracy, GQA exact match,
POPE yes/no metrics.

VQAv2 accuracy is the official evaluation script's (GT-Vision-Lab/VQA, vqaEval.py), step for step,
so numbers compare with published ones:

- the prediction: newlines and tabs become spaces, outer whitespace is stripped, then
  processPunctuation and processDigitArticle (lower case, number words zero..ten → digits,
  articles dropped, apostrophe-less contractions restored);
- the ten human answers: left as stored when they are all identical, otherwise each goes
  through processPunctuation only (no whitespace stripping, lower-casing, digits, articles
  or contractions: the script applies processDigitArticle to the prediction alone);
- a match is string equality after that; the accuracy is the mean over the ten leave-one-out
  subsets of nine humans of min(1, #matches in the subset / 3) (two agreeing humans give 0.6).

`vqa_accuracy_simple` is METHOD.md's shorter wording, min(1, #matching humans / 3) over all ten
(two agreeing humans give 2/3), reported beside it under its own name. GQA exact match compares
the fully normalised prediction with the fully normalised answer.
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
# The script calls periodStrip.sub("", text, re.UNICODE): re.UNICODE (32) lands in `count`, so
# at most 32 periods are stripped. Kept, so even a pathological answer scores the same.
PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """processPunctuation: a mark next to a space (or any mark, once the text holds a comma
    between digits, "1,000") is deleted, otherwise it becomes a space ("black/white" → "black
    white"); then periods not followed by a digit go."""
    out = text
    delete = COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if delete or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """processDigitArticle: lower case, number words → digits, no articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official processing of a predicted answer (also both sides of GQA exact match)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def official_human_answers(human_answers: Sequence[str]) -> list[str]:
    """The humans' answers as the script compares them: punctuation processed only when they
    disagree (a unanimous question keeps its raw answer)."""
    if len(set(human_answers)) > 1:
        return [process_punctuation(answer) for answer in human_answers]
    return list(human_answers)


def human_matches(prediction: str, human_answers: Sequence[str]) -> list[bool]:
    """Which humans gave the prediction, under the official processing of both sides."""
    if not human_answers:
        raise ValueError("VQA accuracy needs at least one human answer")
    predicted = normalize_answer(prediction)
    return [answer == predicted for answer in official_human_answers(human_answers)]


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """The official VQA accuracy: min(1, matches among the other humans / 3), averaged over
    leaving each human out in turn (the 10-choose-9 subsets of ten answers)."""
    hits = human_matches(prediction, human_answers)
    total = sum(hits)
    return sum(min(1.0, (total - hit) / 3) for hit in hits) / len(hits)


def vqa_accuracy_simple(prediction: str, human_answers: Sequence[str]) -> float:
    """min(1, #humans who gave the prediction / 3) over all of them (METHOD.md's wording),
    with the same answer processing as `vqa_accuracy`; it exceeds the official number
    whenever 1 to 3 humans match."""
    return min(1.0, sum(human_matches(prediction, human_answers)) / 3)


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
