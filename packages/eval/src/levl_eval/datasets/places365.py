"""Places365-Standard as an ImageFolder, for zeroshot and linear.

Expected tree under the --datasets root (the "easy format" archive,
places365standard_easyformat.tar, unpacked):

    places365_standard/
        train/<class>/*.jpg          airfield/ ... apartment_building-outdoor/ ... (365)
        val/<class>/*.jpg            the same 365 directories, 100 images each
        classnames.txt, prompts.txt  optional (levl_eval.datasets.imagefolder)

A class is named from its directory: `_` -> space and a `-` sub-category in parentheses
(`apartment_building-outdoor` -> `apartment building (outdoor)`). The probe trains on all of the
up to 5000 training images per class (1.8M in all) unless asked for a per-class cap
(levl_eval.datasets.imagefolder).
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import ClassificationData
from levl_eval.datasets import prompts
from levl_eval.datasets.imagefolder import FolderLayout, read_folder


def scene_name(directory: str) -> str:
    scene, _, kind = directory.partition("-")
    scene = scene.replace("_", " ")
    return f"{scene} ({kind.replace('_', ' ')})" if kind else scene


def scene_names(split_dir: Path, dirs: list[str]) -> list[str]:
    return [scene_name(directory) for directory in dirs]


PLACES365 = FolderLayout("places365", "places365_standard", prompts=prompts.SCENES, names=scene_names)


def read_places365(datasets_root: Path) -> ClassificationData:
    return read_folder(datasets_root, PLACES365)
