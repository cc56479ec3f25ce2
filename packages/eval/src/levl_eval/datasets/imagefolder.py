"""Any ImageFolder classification dataset, for zeroshot and linear; ImageNet and Places365 reuse it.

Expected tree under the --datasets root (the generic one lives in `imagefolder/`):

    imagefolder/
        train/<class>/*.{jpg,jpeg,png}     the probe's training images
        val/<class>/*.{jpg,jpeg,png}       scored by zero-shot and the probe (the same classes)
        classnames.txt                     optional: one class name per line, in sorted-directory
                                           order (default: the directory name, `_` -> space)
        prompts.txt                        optional: zero-shot templates, one per line, each with
                                           `{}` (default: levl_eval.datasets.prompts)

Label = position of the class directory in sorted order. Both splits are read whole (ImageNet's
1.28M training images, Places365's 1.8M), as the paper's probe trains on them; the `linear`
protocol can cap its training split per class (`LinearProbe(train_per_class_cap=N)`,
`levl-eval --train-per-class-cap N`: evenly spaced over each class's sorted files, recorded in
the result's settings) to bound the extraction and the feature cache. val is never subsampled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from levl_eval.data.splits import ClassificationData, EvalSplit, FileSample
from levl_eval.datasets import prompts as default_prompts
from levl_eval.datasets.files import IMAGE_SUFFIXES, dataset_dir, numbered_lines, read_lines
from levl_eval.datasets.prompts import template_problem
from levl_eval.errors import EvalDataError

CLASSNAMES = "classnames.txt"
PROMPTS = "prompts.txt"


def readable(split_dir: Path, dirs: list[str]) -> list[str]:
    """Directory names as class names: `golden_retriever` -> `golden retriever`."""
    return [name.replace("_", " ") for name in dirs]


@dataclass(frozen=True)
class FolderLayout:
    """Where one ImageFolder dataset lives and how its classes are named and prompted."""

    dataset: str
    dirname: str
    prompts: tuple[str, ...] = default_prompts.GENERIC
    train: str = "train"
    test: str = "val"
    names: Callable[[Path, list[str]], list[str]] = readable  # when there is no classnames.txt
    # names written for zero-shot text, from the class directories (() when it has none for them)
    curated: Callable[[list[str]], tuple[str, ...]] | None = None
    curated_source: str = ""


IMAGEFOLDER = FolderLayout("imagefolder", "imagefolder")


def class_dirs(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise EvalDataError(f"{split_dir}: missing; an ImageFolder dataset needs "
                            f"{split_dir.parent.name}/{{train,val}}/<class>/<images>")
    names = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not names:
        raise EvalDataError(f"{split_dir}: holds no class directories (expected <class>/<images>)")
    return names


def class_images(class_dir: Path) -> list[Path]:
    """The class's image files, sorted (os.scandir: ImageNet's train lists 1.28M files)."""
    names = sorted(entry.name for entry in os.scandir(class_dir)
                   if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES)
    if not names:
        raise EvalDataError(f"{class_dir}: holds no images (.jpg, .jpeg, .png)")
    return [class_dir / name for name in names]


def class_names(root: Path, split_dir: Path, dirs: list[str], layout: FolderLayout) -> tuple[str, ...]:
    """classnames.txt when present (one line per class directory), else the layout's rule."""
    path = root / CLASSNAMES
    if not path.is_file():
        return tuple(layout.names(split_dir, dirs))
    names = read_lines(path, "one class name per line, in sorted class-directory order")
    if len(names) != len(dirs):
        raise EvalDataError(f"{path}: {len(names)} names for {len(dirs)} class directories in "
                            f"{split_dir}; write one name per class, in sorted directory order")
    return tuple(names)


def prompt_templates(root: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    """prompts.txt when present (every line a template with `{}`), else the layout's default."""
    path = root / PROMPTS
    if not path.is_file():
        return default
    lines = numbered_lines(path, "one zero-shot template per line, each with one {}")
    if not lines:
        raise EvalDataError(f"{path}: holds no template; write templates such as "
                            "`a photo of a {}.`, one per line")
    for number, template in lines:
        problem = template_problem(template)
        if problem:
            raise EvalDataError(f"{path}: template {template!r} {problem} (line {number}); "
                                "write templates such as `a photo of a {}.`")
    return tuple(template for _, template in lines)


def folder_split(name: str, split_dir: Path, dirs: list[str]) -> EvalSplit:
    """Samples of every class directory in label order, each class's files sorted."""
    files = tuple(FileSample(image=path, label=label)
                  for label, directory in enumerate(dirs)
                  for path in class_images(split_dir / directory))
    return EvalSplit(name, files=files)


def read_folder(datasets_root: Path, layout: FolderLayout) -> ClassificationData:
    """The layout's train/val splits, class names and prompts; both splits list the same classes."""
    root = dataset_dir(datasets_root, layout.dirname)
    train_dir, test_dir = root / layout.train, root / layout.test
    dirs, test_dirs = class_dirs(train_dir), class_dirs(test_dir)
    if test_dirs != dirs:
        missing = sorted(set(dirs) ^ set(test_dirs))
        raise EvalDataError(f"{test_dir}: class directories differ from {train_dir}'s "
                            f"(first difference: {missing[0]!r}); both splits need the same classes")
    train = folder_split(f"{layout.dataset}/{layout.train}", train_dir, dirs)
    test = folder_split(f"{layout.dataset}/{layout.test}", test_dir, dirs)
    curated = layout.curated(dirs) if layout.curated is not None else ()
    return ClassificationData(
        train=train, test=test, classes=class_names(root, train_dir, dirs, layout),
        prompts=prompt_templates(root, layout.prompts), root=root, dataset=layout.dataset,
        train_rule=f"{layout.train}/ (every image)",
        curated_classes=curated, curated_source=layout.curated_source if curated else "",
    )


def read_imagefolder(datasets_root: Path) -> ClassificationData:
    return read_folder(datasets_root, IMAGEFOLDER)
