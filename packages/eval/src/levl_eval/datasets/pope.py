"""POPE (object-hallucination yes/no questions on COCO val2014), for the vlm protocol, scored
with POPE's accuracy / precision / recall / F1 / yes-ratio per split.

Expected tree under the --datasets root (the three files of the POPE repository's
output/coco/, JSON lines despite the .json suffix; images shared with coco/):

    pope/
        coco_pope_random.json        {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
        coco_pope_popular.json        "text": "Is there a snowboard in the image?",
        coco_pope_adversarial.json    "label": "yes"} per line
    coco/val2014/COCO_val2014_000000310196.jpg ...

POPE has no training split, so the bridge trains on the questions (all three files) about the
images at even positions in sorted file-name order and is scored on those about the other half:
no scored image is seen in training. Answers are decided by P(yes) vs P(no).
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.datasets.files import dataset_dir, read_jsonl
from levl_eval.datasets.qa_split import qa_split
from levl_eval.errors import EvalDataError
from levl_eval.taskdata import VQAData
from levl_eval.vlm_items import EXISTS

DIRNAME = "pope"
KINDS = ("random", "popular", "adversarial")
WHAT = 'POPE lines {"image": "COCO_val2014_....jpg", "text": "Is there a ...?", "label": "yes"|"no"}'


def pope_questions(datasets_root: Path, path: Path, kind: str) -> dict[Path, list[dict]]:
    per_image: dict[Path, list[dict]] = {}
    for number, row in enumerate(read_jsonl(path, WHAT), start=1):
        label = str(row.get("label", "")).strip().lower()
        if not isinstance(row.get("image"), str) or not isinstance(row.get("text"), str) or label not in ("yes", "no"):
            raise EvalDataError(f"{path}:{number}: lacks image, text or a yes/no label; expected {WHAT}")
        image = datasets_root / "coco" / "val2014" / row["image"]
        per_image.setdefault(image, []).append(
            {"question": row["text"], "answer": label, "type": EXISTS, "pope": kind})
    return per_image


def read_pope(datasets_root: Path) -> VQAData:
    datasets_root = Path(datasets_root)
    root = dataset_dir(datasets_root, DIRNAME)
    per_image: dict[Path, list[dict]] = {}
    for kind in KINDS:
        for image, questions in pope_questions(datasets_root, root / f"coco_pope_{kind}.json", kind).items():
            per_image.setdefault(image, []).extend(questions)
    images = sorted(per_image)
    if len(images) < 2:
        raise EvalDataError(f"{root}: POPE files name {len(images)} image(s); the even/odd split "
                            "needs at least 2")
    train = {image: per_image[image] for image in images[0::2]}
    test = {image: per_image[image] for image in images[1::2]}
    listed_in = root / "coco_pope_*.json"
    return VQAData("pope", qa_split("pope/even-images", train, None, listed_in),
                   qa_split("pope/odd-images", test, None, listed_in), root=root, notes={
                       "metric": "POPE accuracy, precision, recall, F1, yes-ratio per split",
                       "train_rule": f"questions on the {len(train)} images at even positions "
                                     "(sorted file names) of all three files",
                       "test_rule": f"questions on the other {len(test)} images"})
