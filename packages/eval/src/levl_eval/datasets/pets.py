"""Oxford-IIIT Pets (37 breeds), for zeroshot and linear.

Expected tree under the --datasets root (the official images.tar.gz + annotations.tar.gz,
unpacked side by side):

    oxford-iiit-pet/
        annotations/trainval.txt     `<image> <class id 1..37> <species> <breed id>` per line,
        annotations/test.txt         e.g. `Abyssinian_100 1 1 1`; `#` lines are comments
        images/<image>.jpg

Label = class id - 1. A class is named from its images' names, title-cased as in CLIP
(`american_pit_bull_terrier_12` -> `American Pit Bull Terrier`). The probe trains on trainval
(3,680 images) and both protocols score test (3,669), the standard protocol.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import ClassificationData, EvalSplit
from levl_eval.datasets import prompts
from levl_eval.datasets.files import dataset_dir, listed_split, read_lines
from levl_eval.errors import EvalDataError

DIRNAME = "oxford-iiit-pet"


def breed_name(image: str) -> str:
    return " ".join(word.capitalize() for word in image.rsplit("_", 1)[0].split("_"))


def annotation_rows(path: Path) -> list[tuple[str, int]]:
    """(image name, label 0..36) of every non-comment line."""
    rows = []
    for number, line in enumerate(read_lines(path, "`<image> <class id> <species> <breed id>` lines"), 1):
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise EvalDataError(f"{path}:{number}: expected `<image> <class id 1..37> <species> "
                                f"<breed id>`, got {line!r}")
        rows.append((fields[0], int(fields[1]) - 1))
    return rows


def breed_names(rows: list[tuple[str, int]], path: Path) -> tuple[str, ...]:
    """Each class id's name (ids 1..max, 37 in the official lists), from its images; an id
    without images or with two names is an error."""
    names: dict[int, str] = {}
    for image, label in rows:
        if names.setdefault(label, breed_name(image)) != breed_name(image):
            raise EvalDataError(f"{path}: class id {label + 1} holds both {names[label]!r} and "
                                f"{breed_name(image)!r} images")
    absent = [label + 1 for label in range(max(names, default=-1) + 1) if label not in names]
    if absent or not names:
        raise EvalDataError(f"{path}: no image of class id {absent[0] if absent else 1}; "
                            "expected every breed id from 1 up")
    return tuple(names[label] for label in range(len(names)))


def pets_split(root: Path, split: str, rows: list[tuple[str, int]]) -> EvalSplit:
    return listed_split(f"pets/{split}", [root / "images" / f"{image}.jpg" for image, _ in rows],
                        [label for _, label in rows], root / "annotations" / f"{split}.txt")


def read_pets(datasets_root: Path) -> ClassificationData:
    root = dataset_dir(datasets_root, DIRNAME)
    train_rows = annotation_rows(root / "annotations" / "trainval.txt")
    test_rows = annotation_rows(root / "annotations" / "test.txt")
    classes = breed_names(train_rows, root / "annotations" / "trainval.txt")
    unknown = [image for image, label in test_rows if label >= len(classes)]
    if unknown:
        raise EvalDataError(f"{root / 'annotations' / 'test.txt'}: {unknown[0]} has a class id "
                            f"above trainval's {len(classes)}")
    return ClassificationData(
        train=pets_split(root, "trainval", train_rows), test=pets_split(root, "test", test_rows),
        classes=classes, prompts=prompts.PETS, root=root, dataset="pets",
        train_rule="trainval (every image)")
