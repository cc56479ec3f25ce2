"""The classification datasets' readers, shared by the zeroshot and linear protocols."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from levl_eval.datasets.aircraft import read_aircraft
from levl_eval.datasets.imagefolder import read_imagefolder
from levl_eval.datasets.imagenet import read_imagenet
from levl_eval.datasets.pets import read_pets
from levl_eval.datasets.places365 import read_places365

CLASSIFICATION: dict[str, Callable[[Path], Any]] = {
    "imagenet": read_imagenet,
    "places365": read_places365,
    "aircraft": read_aircraft,
    "pets": read_pets,
    "imagefolder": read_imagefolder,
}
