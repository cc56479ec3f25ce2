"""VQAv2, for the vlm protocol, scored by VQA accuracy over the ten human answers.

Expected tree under the --datasets root (the official question and annotation zips; the
images are COCO 2014, shared with the retrieval reader's coco/):

    vqav2/
        v2_OpenEnded_mscoco_train2014_questions.json   {"questions": [{"image_id": 458752,
        v2_OpenEnded_mscoco_val2014_questions.json       "question": "...", "question_id": ...}]}
        v2_mscoco_train2014_annotations.json           {"annotations": [{"question_id": ...,
        v2_mscoco_val2014_annotations.json               "answers": [{"answer": "net"}, ...x10],
                                                         "multiple_choice_answer": "net",
                                                         "answer_type": "other"}]}
    coco/train2014/COCO_train2014_000000458752.jpg ...
    coco/val2014/COCO_val2014_000000262148.jpg ...

The bridge trains on train2014 and is scored on val2014 (test-dev's answers are not public): as
many train images as the bridge's budget allows (VLMSettings.train_images) and at most 2000 val
images, evenly spaced, with all their questions (levl_eval.datasets.qa_split). The training
target is `multiple_choice_answer`; scoring uses the ten human answers. A question's type is its
answer_type (yes/no, number, other). train2014 also trains POPE's bridge (`vqav2_train`).
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets.files import dataset_dir, read_json
from levl_eval.datasets.qa_split import BUDGET_RULE, TEST_IMAGE_CAP, cap_rule, qa_split
from levl_eval.errors import EvalDataError
from levl_eval.protocols.vlm.data import VQAData
from levl_eval.protocols.vlm.vqa_metrics import normalize_answer

DIRNAME = "vqav2"
SPLITS = {"train": "train2014", "test": "val2014"}


def listed(path: Path, key: str, what: str) -> list:
    document = read_json(path, what)
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise EvalDataError(f"{path}: no `{key}` list; expected {what}")
    return document[key]


def human_answers(annotation: dict) -> list[str]:
    """The ten answers with multiple_choice_answer's first (it is the target): the identical
    string if a human gave it, else one equal after normalisation, else the list as given."""
    answers = [str(a["answer"]) for a in annotation["answers"]]
    target = str(annotation["multiple_choice_answer"])
    first = next((i for i, a in enumerate(answers) if a == target), None)
    if first is None:
        first = next((i for i, a in enumerate(answers) if normalize_answer(a) == normalize_answer(target)), 0)
    return [answers[first], *answers[:first], *answers[first + 1:]]


def annotations_by_question(path: Path) -> dict[int, dict]:
    """question_id -> {answers, type}; a malformed annotation is an error naming the file."""
    by_question = {}
    for index, annotation in enumerate(listed(path, "annotations", "VQAv2 annotations")):
        try:
            by_question[annotation["question_id"]] = {
                "answers": human_answers(annotation), "type": str(annotation["answer_type"])}
        except (KeyError, TypeError, AttributeError):
            raise EvalDataError(f"{path}: annotations[{index}] lacks question_id, answers[].answer, "
                                "multiple_choice_answer or answer_type") from None
    return by_question


def vqav2_questions(datasets_root: Path, root: Path, split: str) -> tuple[Path, dict[Path, list[dict]]]:
    """COCO image path -> its questions, each joined with its annotation."""
    coco = SPLITS[split]
    questions_path = root / f"v2_OpenEnded_mscoco_{coco}_questions.json"
    annotations_path = root / f"v2_mscoco_{coco}_annotations.json"
    answers = annotations_by_question(annotations_path)
    per_image: dict[Path, list[dict]] = {}
    for index, question in enumerate(listed(questions_path, "questions", "VQAv2 questions")):
        try:
            qid, image_id, text = question["question_id"], int(question["image_id"]), str(question["question"])
        except (KeyError, TypeError, ValueError):
            raise EvalDataError(f"{questions_path}: questions[{index}] lacks question_id, image_id "
                                "or question") from None
        if qid not in answers:
            raise EvalDataError(f"{annotations_path}: no annotation for question_id {qid} "
                                f"(listed in {questions_path.name})")
        image = datasets_root / "coco" / coco / f"COCO_{coco}_{image_id:012d}.jpg"
        per_image.setdefault(image, []).append({"question": text, **answers[qid]})
    return questions_path, per_image


def vqav2_train(datasets_root: Path) -> tuple[EvalSplit, str]:
    """train2014's questions on every image, and the rule the report states for them."""
    datasets_root = Path(datasets_root)
    train_path, train = vqav2_questions(datasets_root, dataset_dir(datasets_root, DIRNAME), "train")
    return (qa_split("vqav2/train2014", train, None, train_path),
            f"train2014: {cap_rule(None, len(train))}; {BUDGET_RULE}")


def read_vqav2(datasets_root: Path) -> VQAData:
    datasets_root = Path(datasets_root)
    root = dataset_dir(datasets_root, DIRNAME)
    train, train_rule = vqav2_train(datasets_root)
    test_path, test = vqav2_questions(datasets_root, root, "test")
    return VQAData("vqav2", train, qa_split("vqav2/val2014", test, TEST_IMAGE_CAP, test_path), root=root,
                   notes={"metric": "VQA accuracy of the official script (mean over the ten leave-one-"
                                    "human-out subsets) and min(1, #humans/3) beside it",
                          "train_rule": train_rule,
                          "test_rule": f"val2014: {cap_rule(TEST_IMAGE_CAP, len(test))}"})
