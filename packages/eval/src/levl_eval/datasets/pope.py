"""POPE (object-hallucination yes/no questions on COCO val2014), for the vlm protocol, scored
with POPE's accuracy / precision / recall / F1 / yes-ratio per split.

Expected tree under the --datasets root (the three files of the POPE repository's
output/coco/, JSON lines despite the .json suffix; images shared with coco/), and VQAv2's
train2014 questions, which train the bridge:

    pope/
        coco_pope_random.json        {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
        coco_pope_popular.json        "text": "Is there a snowboard in the image?",
        coco_pope_adversarial.json    "label": "yes"} per line
    coco/val2014/COCO_val2014_000000310196.jpg ...
    vqav2/ + coco/train2014/         (levl_eval.datasets.vqav2)

POPE is a test set: its questions never train the bridge that answers them. As in the paper's
frozen-VLM recipe the bridge trains on VQA training questions, VQAv2's train2014 (the same split
and budget as the vqav2 task's), and is scored on every question of the three files. Its COCO
train2014 images are disjoint from POPE's val2014 ones; GQA's training images are not (about
half of Visual Genome's images are COCO's, val2014 included), so GQA does not train POPE's. A
training image that is a POPE image (same COCO id) would still be dropped, and counted. Without
vqav2/ the task is skipped, saying why. Answers are decided by P(yes) vs P(no).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets.files import dataset_dir, read_jsonl
from levl_eval.datasets.qa_split import qa_split
from levl_eval.datasets.vqav2 import vqav2_train
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.protocols.vlm.data import VQAData
from levl_eval.protocols.vlm.items import EXISTS

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


def coco_image_id(path: Path) -> int | str:
    """COCO's image id from its file name (COCO_val2014_000000310196.jpg → 310196), unique
    across COCO's splits; the file name itself when it is not COCO's."""
    tail = path.stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else path.name


def bridge_training_split(datasets_root: Path, pope_images: list[Path]) -> tuple[EvalSplit, str]:
    """VQAv2's train2014 split without any POPE image, and the rule the report states."""
    try:
        train, rule = vqav2_train(datasets_root)
    except DatasetNotFound as absent:
        raise DatasetNotFound(f"{absent.path} (POPE's bridge trains on VQAv2's train2014 "
                              "questions, never on POPE's own)") from None
    pope_ids = {coco_image_id(image) for image in pope_images}
    kept = tuple(sample for sample in train.files if coco_image_id(sample.image) not in pope_ids)
    if not kept:
        raise EvalDataError(f"{train.name}: every training image is a POPE image; POPE's bridge "
                            "needs VQAv2 train2014 questions on other images")
    dropped = len(train.files) - len(kept)
    if dropped:
        train = replace(train, name=f"{train.name}-without-pope-images", files=kept)
    return train, f"VQAv2 {rule}; {dropped} POPE image(s) dropped from it"


def read_pope(datasets_root: Path) -> VQAData:
    datasets_root = Path(datasets_root)
    root = dataset_dir(datasets_root, DIRNAME)
    per_image: dict[Path, list[dict]] = {}
    for kind in KINDS:
        for image, questions in pope_questions(datasets_root, root / f"coco_pope_{kind}.json", kind).items():
            per_image.setdefault(image, []).extend(questions)
    test = qa_split("pope/val2014", per_image, None, root / "coco_pope_*.json")
    train, train_rule = bridge_training_split(datasets_root, sorted(per_image))
    return VQAData("pope", train, test, root=root, notes={
        "metric": "POPE accuracy, precision, recall, F1, yes-ratio per split",
        "train_rule": train_rule,
        "test_rule": f"every question of the three files, on all {len(test.files)} images"})
