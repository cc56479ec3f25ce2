"""What the depth protocol runs on (NYU Depth v2; the synthetic world has no depth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from levl_eval.data.splits import EvalSplit, root_text


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
        return {"dataset": self.dataset, "root": root_text(self.root), "train": self.train.describe(),
                "test": self.test.describe(), "depth_range_m": [self.min_depth, self.max_depth],
                **self.notes}
