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
size: this is checked from the file headers before any model runs.
"""

from __future__ import annotations

from pathlib import Path

import PIL.Image

from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.featureset import EvalSplit, FileSample
from levl_eval.taskdata import SegmentationData

DIRNAME = "ADEChallengeData2016"
NUM_CLASSES = 150
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header, or a one-line error naming the file."""
    try:
        with PIL.Image.open(path) as opened:
            return opened.size
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
        raise EvalDataError(f"{path}: unreadable image ({type(exc).__name__}); replace the file") from None


def paired_samples(root: Path, split: str) -> tuple[FileSample, ...]:
    """Every image of images/<split>/ with annotations/<split>/<stem>.png, sizes checked."""
    image_dir, mask_dir = root / "images" / split, root / "annotations" / split
    if not image_dir.is_dir():
        raise EvalDataError(f"{image_dir}: missing; ADE20K needs images/{{training,validation}}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise EvalDataError(f"{image_dir}: holds no images; re-extract ADEChallengeData2016.zip")
    samples = []
    for image in images:
        mask = mask_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise EvalDataError(f"{mask}: missing annotation for {image.name}; re-extract the dataset")
        if image_size(image) != image_size(mask):
            raise EvalDataError(f"{mask}: size {image_size(mask)} differs from its image's "
                                f"{image_size(image)}; replace the annotation")
        samples.append(FileSample(image=image, mask=mask))
    return tuple(samples)


def class_names(root: Path) -> tuple[str, ...]:
    """The 150 names from objectInfo150.txt (first synonym), or class_0..class_149."""
    info = root / "objectInfo150.txt"
    if not info.is_file():
        return tuple(f"class_{i}" for i in range(NUM_CLASSES))
    rows = [line.split("\t") for line in info.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    names = tuple(row[-1].split(";")[0].strip() for row in rows)
    if len(names) != NUM_CLASSES:
        raise EvalDataError(f"{info}: lists {len(names)} classes, expected {NUM_CLASSES}")
    return names


def read_ade20k(datasets_root: Path) -> SegmentationData:
    root = Path(datasets_root) / DIRNAME
    if not root.is_dir():
        raise DatasetNotFound(root)

    def split(name: str) -> EvalSplit:
        return EvalSplit(f"ade20k/{name}", files=paired_samples(root, name), reduce_zero_label=True)

    return SegmentationData("ade20k", split("training"), split("validation"), class_names(root), root=root)
