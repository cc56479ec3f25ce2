"""What the dense, robustness and retrieval protocols run on (the classification protocols take
`featureset.EvalData`).

Each comes from the synthetic world (`levl_eval.datasets.synth`) or from a standard on-disk
layout (`levl_eval.datasets`), and describes itself for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from levl_eval.featureset import EvalData, EvalSplit

VARIANTS: tuple[str, ...] = ("original", "mixed_same", "mixed_rand")


def _root(root: Path | None) -> str | None:
    return None if root is None else str(root)


@dataclass(frozen=True)
class ClassificationData(EvalData):
    """A real dataset's EvalData (zeroshot, linear) that also names itself and says how its probe
    training split was chosen (`train_rule`, e.g. a per-class cap), for the report."""

    dataset: str = ""
    train_rule: str = ""
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, **super().describe(), "train_rule": self.train_rule,
                **self.notes}


@dataclass(frozen=True)
class SegmentationData:
    """Train and test splits with per-pixel labels 0..C-1 (255 = void) and the class names."""

    dataset: str
    train: EvalSplit
    test: EvalSplit
    classes: tuple[str, ...]
    root: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": _root(self.root), "train": self.train.describe(),
                "test": self.test.describe(), "num_classes": self.num_classes}


@dataclass(frozen=True)
class DepthData:
    """Train and test splits whose per-pixel maps are depth in metres (0 = no measurement).

    Pixels count in training and scoring only where `min_depth < depth <= max_depth`; `notes`
    says which split list and crop the reader used (reported verbatim).
    """

    dataset: str
    train: EvalSplit
    test: EvalSplit
    min_depth: float = 1e-3
    max_depth: float = 10.0
    root: Path | None = None
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": _root(self.root), "train": self.train.describe(),
                "test": self.test.describe(), "depth_range_m": [self.min_depth, self.max_depth],
                **self.notes}


@dataclass(frozen=True)
class BackgroundData:
    """A probe-training split and the same test images under each background variant.

    `train_rule` says where the probe's training images came from (reported verbatim).
    """

    dataset: str
    train: EvalSplit
    variants: dict[str, EvalSplit]
    classes: tuple[str, ...]
    train_rule: str = ""
    root: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": _root(self.root), "train": self.train.describe(),
                "train_rule": self.train_rule, "classes": list(self.classes),
                "variants": {name: split.describe() for name, split in self.variants.items()}}


@dataclass(frozen=True)
class RetrievalData:
    """One split of images, each with one or more captions (its `FileSample.captions`, or the
    shard's caption member)."""

    dataset: str
    split: EvalSplit
    root: Path | None = None
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": _root(self.root), "split": self.split.describe(),
                **self.notes}


@dataclass(frozen=True)
class VQAData:
    """Images with question/answer pairs (each sample's `qa`): the bridge trains on `train`'s
    questions and is scored on `test`'s."""

    dataset: str
    train: EvalSplit
    test: EvalSplit
    root: Path | None = None
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": _root(self.root), "train": self.train.describe(),
                "test": self.test.describe(), **self.notes}
