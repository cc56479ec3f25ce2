"""GQA (balanced questions), for the vlm protocol, scored by exact match.

Expected tree under the --datasets root (the official questions1.2.zip and images.zip):

    gqa/
        questions/train_balanced_questions.json     {"<question id>": {"imageId": "2375429",
        questions/testdev_balanced_questions.json    "question": "...", "answer": "no", "types":
                                                     {"structural": "verify", ...}, ...}, ...}
        images/<imageId>.jpg

The bridge trains on train_balanced (as many images as its budget allows, evenly spaced, with
all their questions: VLMSettings.train_images, levl_eval.datasets.qa_split) and is scored on
every testdev_balanced question (398 images, 12,578 questions). A question's type is its structural type (verify, query, choose,
logical, compare), so the report breaks accuracy down by it. Note that the train file is ~1 GB
of JSON: reading it takes tens of seconds and a few GB of memory.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.datasets.files import dataset_dir, read_json
from levl_eval.datasets.qa_split import BUDGET_RULE, cap_rule, qa_split
from levl_eval.errors import EvalDataError
from levl_eval.protocols.vlm.data import VQAData

DIRNAME = "gqa"
SPLITS = {"train": "train_balanced", "test": "testdev_balanced"}
WHAT = 'GQA questions: {"<question id>": {"imageId", "question", "answer", "types"}, ...}'


def gqa_qa(question_id: str, entry: object, path: Path) -> tuple[str, dict]:
    """(imageId, QA dict) of one question; a malformed entry is an error naming it."""
    try:
        qa = {"question": str(entry["question"]), "answer": str(entry["answer"]),
              "type": str((entry.get("types") or {}).get("structural", "open"))}
        return str(entry["imageId"]), qa
    except (KeyError, TypeError, AttributeError):
        raise EvalDataError(f"{path}: question {question_id!r} lacks imageId, question or answer; "
                            f"expected {WHAT}") from None


def gqa_questions(root: Path, split: str) -> tuple[Path, dict[Path, list[dict]]]:
    path = root / "questions" / f"{SPLITS[split]}_questions.json"
    document = read_json(path, WHAT)
    if not isinstance(document, dict) or not document:
        raise EvalDataError(f"{path}: not a non-empty JSON object; expected {WHAT}")
    per_image: dict[Path, list[dict]] = {}
    for question_id, entry in document.items():
        image_id, qa = gqa_qa(question_id, entry, path)
        per_image.setdefault(root / "images" / f"{image_id}.jpg", []).append(qa)
    return path, per_image


def read_gqa(datasets_root: Path) -> VQAData:
    root = dataset_dir(datasets_root, DIRNAME)
    train_path, train = gqa_questions(root, "train")
    test_path, test = gqa_questions(root, "test")
    return VQAData("gqa", qa_split(f"gqa/{SPLITS['train']}", train, None, train_path),
                   qa_split(f"gqa/{SPLITS['test']}", test, None, test_path), root=root, notes={
                       "metric": "exact match after the official VQA answer normalisation",
                       "train_rule": f"{SPLITS['train']}: {cap_rule(None, len(train))}; {BUDGET_RULE}",
                       "test_rule": f"{SPLITS['test']}: {cap_rule(None, len(test))}"})
