"""Where each protocol's data comes from: the synthetic world, and standard on-disk layouts.

Real datasets live under one `--datasets ROOT`, each in its usual directory (the module of each
reader documents its tree): `ADEChallengeData2016/` (segmentation), `bg_challenge/` (background),
`coco/` and `flickr30k/` (retrieval). A reader raises DatasetNotFound when its directory is
absent (the protocol is skipped and reported) and EvalDataError naming the file when it is
malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from levl_eval.datasets.ade20k import read_ade20k
from levl_eval.datasets.in9 import read_in9
from levl_eval.datasets.karpathy import read_coco, read_flickr30k
from levl_eval.datasets.synth import (
    synth_background,
    synth_retrieval,
    synth_segmentation,
    synth_vlm,
)
from levl_eval.featureset import EvalData

SYNTH_TASKS: dict[str, Callable[[EvalData], Any]] = {
    "zeroshot": lambda data: data,
    "linear": lambda data: data,
    "segmentation": synth_segmentation,
    "background": synth_background,
    "retrieval": synth_retrieval,
    "vlm": synth_vlm,
}

REAL_DATASETS: dict[str, dict[str, Callable[[Path], Any]]] = {
    "segmentation": {"ade20k": read_ade20k},
    "background": {"in9": read_in9},
    "retrieval": {"coco": read_coco, "flickr30k": read_flickr30k},
}

__all__ = ["REAL_DATASETS", "SYNTH_TASKS", "read_ade20k", "read_coco", "read_flickr30k", "read_in9"]
