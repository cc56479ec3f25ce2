"""What the segmentation protocol runs on (from the synthetic world or ADE20K / COCO-Stuff)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from levl_eval.data.splits import EvalSplit, root_text


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
        return {"dataset": self.dataset, "root": root_text(self.root), "train": self.train.describe(),
                "test": self.test.describe(), "num_classes": self.num_classes}
