"""What the frozen-VLM protocol runs on (the synthetic world's QA pairs, GQA, VQAv2, POPE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from levl_eval.data.splits import EvalSplit, root_text


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
        return {"dataset": self.dataset, "root": root_text(self.root), "train": self.train.describe(),
                "test": self.test.describe(), **self.notes}
