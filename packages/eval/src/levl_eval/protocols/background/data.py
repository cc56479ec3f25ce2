"""What the background-robustness protocol runs on (the synthetic world's swapped
backgrounds or ImageNet-9)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from levl_eval.data.splits import EvalSplit, root_text

VARIANTS: tuple[str, ...] = ("original", "mixed_same", "mixed_rand")


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
        return {"dataset": self.dataset, "root": root_text(self.root), "train": self.train.describe(),
                "train_rule": self.train_rule, "classes": list(self.classes),
                "variants": {name: split.describe() for name, split in self.variants.items()}}
