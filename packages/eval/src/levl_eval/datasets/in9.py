"""ImageNet-9 backgrounds challenge (MadryLab/backgrounds_challenge) for background robustness.

Expected tree under the --datasets root (the challenge's data archive, unpacked):

    bg_challenge/
        original/val/<class>/*.JPEG          e.g. 00_dog/, 01_bird/, ... 08_fish/
        mixed_same/val/<class>/*.JPEG        the same file names as original/val
        mixed_rand/val/<class>/*.JPEG
        original/train/<class>/*.JPEG        optional: the IN-9 training set

Classes are the sorted directory names of original/val (label = position; the name is the
directory without its `NN_` prefix). The probe trains on original/train when it is present.
The public challenge archive ships only val, so otherwise the probe trains on a fixed half of
original/val (per class, files at even positions in sorted order) and every variant is scored
on the other half: the scored images are never seen in training, and each variant is scored on
the very same scenes. The report records which rule was used.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.datasets.files import IMAGE_SUFFIXES, dataset_dir
from levl_eval.errors import EvalDataError
from levl_eval.protocols.background.data import VARIANTS, BackgroundData

DIRNAME = "bg_challenge"


def class_dirs(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise EvalDataError(f"{split_dir}: missing; the backgrounds challenge needs "
                            "{original,mixed_same,mixed_rand}/val/<class>/")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not names:
        raise EvalDataError(f"{split_dir}: holds no class directories")
    return names


def class_files(split_dir: Path, classes: list[str]) -> dict[str, list[str]]:
    """File names per class directory, sorted; the class set must be the original/val one."""
    found = class_dirs(split_dir)
    if found != classes:
        raise EvalDataError(f"{split_dir}: class directories {found} differ from original/val's {classes}")
    files = {}
    for name in classes:
        files[name] = sorted(p.name for p in (split_dir / name).iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files[name]:
            raise EvalDataError(f"{split_dir / name}: holds no images")
    return files


def samples_of(split_dir: Path, files: dict[str, list[str]], classes: list[str]) -> tuple[FileSample, ...]:
    return tuple(FileSample(image=split_dir / name / file, label=label)
                 for label, name in enumerate(classes) for file in files[name])


def display_name(directory: str) -> str:
    """`00_dog` -> `dog`; `02_wheeled vehicle` -> `wheeled vehicle`."""
    prefix, _, rest = directory.partition("_")
    return rest if prefix.isdigit() and rest else directory


def read_in9(datasets_root: Path) -> BackgroundData:
    root = dataset_dir(datasets_root, DIRNAME)
    classes = class_dirs(root / "original" / "val")
    val = class_files(root / "original" / "val", classes)
    for variant in VARIANTS[1:]:
        other = class_files(root / variant / "val", classes)
        for name in classes:
            missing = sorted(set(val[name]) - set(other[name]))
            if missing:
                raise EvalDataError(f"{root / variant / 'val' / name / missing[0]}: missing "
                                    "(every original/val image needs its variant)")
    if (root / "original" / "train").is_dir():
        train_files, test_files = class_files(root / "original" / "train", classes), val
        rule = "original/train"
    else:
        train_files = {name: files[0::2] for name, files in val.items()}
        test_files = {name: files[1::2] for name, files in val.items()}
        rule = "no original/train: even-position half of original/val per class; scored on the odd half"
    train = EvalSplit("in9/original/train", files=samples_of(
        root / "original" / ("train" if rule == "original/train" else "val"), train_files, classes))
    variants = {v: EvalSplit(f"in9/{v}/val", files=samples_of(root / v / "val", test_files, classes))
                for v in VARIANTS}
    return BackgroundData("in9", train, variants, tuple(display_name(c) for c in classes),
                          train_rule=rule, root=root)
