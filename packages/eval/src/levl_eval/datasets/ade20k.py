"""ADE20K (SceneParsing / ADEChallengeData2016) for linear segmentation.

Expected tree under the --datasets root (the official ADEChallengeData2016.zip, unpacked):

    ADEChallengeData2016/
        objectInfo150.txt                       optional: class names (else class_0..class_149)
        images/training/ADE_train_00000001.jpg ...
        images/validation/ADE_val_00000001.jpg ...
        annotations/training/ADE_train_00000001.png ...     one 8-bit PNG per image, same size
        annotations/validation/ADE_val_00000001.png ...

Annotation value 0 is "other" (void) and 1..150 are the classes; as in mmsegmentation's
`reduce_zero_label`, 0 becomes 255 (ignored) and k becomes k - 1. The head trains on
`training` and is scored on `validation`. Every image must have its annotation, of the same
size and 8-bit: this is checked from the file headers before any model runs
(`levl_eval.datasets.files.paired_samples`, shared with COCO-Stuff).
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets.files import PairedLayout, dataset_dir, paired_samples, read_lines
from levl_eval.errors import EvalDataError
from levl_eval.protocols.segmentation.data import SegmentationData

DIRNAME = "ADEChallengeData2016"
NUM_CLASSES = 150
LAYOUT = PairedLayout(
    splits_hint="ADE20K needs images/{training,validation}",
    empty_hint="re-extract ADEChallengeData2016.zip",
    annotation_hint="re-extract the dataset",
)


def class_names(root: Path) -> tuple[str, ...]:
    """The 150 names from objectInfo150.txt (first synonym), or class_0..class_149."""
    info = root / "objectInfo150.txt"
    if not info.is_file():
        return tuple(f"class_{i}" for i in range(NUM_CLASSES))
    lines = read_lines(info, "ADE20K's class list: a header line, then one tab-separated row per "
                             "class ending in its names; re-extract ADEChallengeData2016.zip")
    rows = [line.split("\t") for line in lines[1:]]
    names = tuple(row[-1].split(";")[0].strip() for row in rows)
    if len(names) != NUM_CLASSES:
        raise EvalDataError(f"{info}: lists {len(names)} classes, expected {NUM_CLASSES}")
    return names


def read_ade20k(datasets_root: Path) -> SegmentationData:
    root = dataset_dir(datasets_root, DIRNAME)

    def split(name: str) -> EvalSplit:
        return EvalSplit(f"ade20k/{name}", files=paired_samples(root, name, LAYOUT), reduce_zero_label=True)

    return SegmentationData("ade20k", split("training"), split("validation"), class_names(root), root=root)
