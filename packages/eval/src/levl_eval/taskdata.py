"""What the classification protocols (zeroshot, linear) run on from a real dataset, and what
every protocol's task data shares.

Each other protocol's task data lives in its folder (`levl_eval.protocols.<name>.data`); all of
them describe themselves for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from levl_eval.featureset import EvalData


def root_text(root: Path | None) -> str | None:
    """A task's dataset root as the report writes it (None when it has none)."""
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
