"""FGVC-Aircraft (2013b), variant level (100 classes), for zeroshot and linear.

Expected tree under the --datasets root (the official fgvc-aircraft-2013b.tar.gz, unpacked):

    fgvc-aircraft-2013b/data/
        variants.txt                       the 100 variant names, one per line (label order)
        images_variant_trainval.txt        `<image id> <variant>` per line, e.g. `1025794 707-320`
        images_variant_test.txt            (a variant may contain spaces: `0062781 Cessna 172`)
        images/<image id>.jpg

The probe trains on trainval (6,667 images) and both protocols score test (3,333), the
standard protocol; the images keep their banner (the usual 20-pixel crop is not applied).
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import ClassificationData, EvalSplit
from levl_eval.datasets import prompts
from levl_eval.datasets.files import dataset_dir, listed_split, read_lines
from levl_eval.errors import EvalDataError

DIRNAME = "fgvc-aircraft-2013b"
SPLITS = ("trainval", "test")


def variant_split(data: Path, split: str, classes: tuple[str, ...]) -> EvalSplit:
    """One `images_variant_<split>.txt` list as a labelled split; unknown variants are errors."""
    path = data / f"images_variant_{split}.txt"
    index = {name: label for label, name in enumerate(classes)}
    images, labels = [], []
    for number, line in enumerate(read_lines(path, "`<image id> <variant>` lines"), start=1):
        image_id, _, variant = line.partition(" ")
        if variant.strip() not in index:
            raise EvalDataError(f"{path}:{number}: variant {variant.strip()!r} is not in "
                                f"{data / 'variants.txt'}; expected `<image id> <variant>`")
        images.append(data / "images" / f"{image_id}.jpg")
        labels.append(index[variant.strip()])
    return listed_split(f"aircraft/{split}", images, labels, path)


def read_aircraft(datasets_root: Path) -> ClassificationData:
    root = dataset_dir(datasets_root, DIRNAME)
    data = root / "data"
    classes = tuple(read_lines(data / "variants.txt", "the official variant list"))
    train, test = (variant_split(data, split, classes) for split in SPLITS)
    return ClassificationData(train=train, test=test, classes=classes, prompts=prompts.AIRCRAFT,
                              root=root, dataset="aircraft", train_rule="trainval (every image)",
                              notes={"level": "variant"})
