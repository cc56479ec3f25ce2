"""Question–answer items of the `vlm` protocol, and their prompt and answer tokens.

Each image carries its QA pairs as dicts (the synthetic world's json `qa`, or a real dataset's
questions): `question`, `answer` (the training target) or `answers` (VQAv2's ten humans, the
target first), `type` (`exists` for yes/no existence questions, scored POPE-style; anything
else is open-ended) and `pope` (the negative kind: random / popular / adversarial).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from levl_eval.errors import EvalDataError

PROMPT = "Question: {question}\nAnswer the question using a single word or phrase.\nAnswer:"
EXISTS = "exists"


@dataclass(frozen=True)
class QAItem:
    """One question about image `image` (an index into the split's patch features)."""

    image: int
    question: str
    answers: tuple[str, ...]
    kind: str
    pope: str | None = None

    @property
    def target(self) -> str:
        return self.answers[0]

    @property
    def is_yes_no(self) -> bool:
        return self.kind == EXISTS


def qa_item(image: int, qa: dict, where: str) -> QAItem:
    """A QAItem from one stored dict; a dict without question/answer is a malformed split."""
    answers = qa.get("answers") or ([qa["answer"]] if "answer" in qa else [])
    if not isinstance(qa.get("question"), str) or not answers:
        raise EvalDataError(f"{where}: image {image} has a QA entry without question/answer "
                            f"({sorted(qa)}); regenerate the split")
    return QAItem(image, qa["question"], tuple(str(a) for a in answers), str(qa.get("type", "")),
                  qa.get("pope"))


def split_items(qa_per_image: Sequence[Sequence[dict]], where: str, limit: int | None) -> list[QAItem]:
    """Every image's questions in stored order (the first `limit` when set)."""
    items = [qa_item(i, qa, where) for i, pairs in enumerate(qa_per_image) for qa in pairs]
    if not items:
        raise EvalDataError(f"{where}: no QA pairs in any sample's json; regenerate the world "
                            "with `levl-data synth` (eval splits carry `qa`)")
    return items[:limit] if limit is not None else items


@dataclass(frozen=True)
class ItemTokens:
    """Prompt and answer token ids of one item (the answer ends with EOS when there is one)."""

    prompt: list[int]
    answer: list[int]


def item_tokens(encode, item: QAItem, prompt: str, eos_id: int | None) -> ItemTokens:
    """The answer follows the prompt after one space, as a tokenizer would see it in text."""
    answer = encode(" " + item.target) + ([eos_id] if eos_id is not None else [])
    return ItemTokens(encode(prompt.format(question=item.question)), answer)
