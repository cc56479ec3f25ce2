"""What the retrieval protocol runs on (the synthetic world's captions or a Karpathy split)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from levl_eval.data.splits import EvalSplit, root_text


@dataclass(frozen=True)
class RetrievalData:
    """One split of images, each with one or more captions (its `FileSample.captions`, or the
    shard's caption member)."""

    dataset: str
    split: EvalSplit
    root: Path | None = None
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "root": root_text(self.root), "split": self.split.describe(),
                **self.notes}
