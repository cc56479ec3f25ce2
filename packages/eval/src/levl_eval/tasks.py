"""The evaluation plan: which (protocol, dataset) pairs run, and which are skipped and why.

A task's key is the protocol's name on the synthetic world (`segmentation`) and
`protocol:dataset` on a real dataset (`segmentation:ade20k`); report.json keys results by it.
Everything is read and checked here, before any checkpoint is loaded, so an absent dataset is
reported as skipped up front and a malformed one stops the run before hours of extraction.
Either source may be absent: without a synthetic world (no --data) only real datasets run, and
without a --datasets root only the synthetic world does; the other side's tasks are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from levl_eval.data.splits import EvalData
from levl_eval.errors import DatasetNotFound
from levl_eval.geometry import SYNTH
from levl_eval.protocols.registry import REAL_DATASETS, SYNTH_TASKS

NO_SYNTH = "no --data (synthetic world) given"
NO_DATASETS = "no --datasets root given"


@dataclass(frozen=True)
class EvalTask:
    key: str
    protocol: str
    dataset: str
    data: Any

    def describe(self) -> dict:
        return {"protocol": self.protocol, "dataset": self.dataset, "data": self.data.describe()}


@dataclass(frozen=True)
class SkippedTask:
    key: str
    reason: str

    def describe(self) -> dict:
        return {"task": self.key, "reason": self.reason}


def protocol_tasks(
    protocol: str, synth: EvalData | None, datasets_root: Path | None
) -> tuple[list[EvalTask], list[SkippedTask]]:
    """The synthetic-world task of one protocol (None: no world given) and its real-dataset tasks."""
    tasks, skipped = [], []
    try:
        if synth is None:
            skipped.append(SkippedTask(protocol, NO_SYNTH))
        else:
            tasks.append(EvalTask(protocol, protocol, SYNTH, SYNTH_TASKS[protocol](synth)))
    except DatasetNotFound as absent:
        skipped.append(SkippedTask(protocol, str(absent)))
    for dataset, reader in REAL_DATASETS.get(protocol, {}).items():
        key = f"{protocol}:{dataset}"
        if datasets_root is None:
            skipped.append(SkippedTask(key, NO_DATASETS))
            continue
        try:
            tasks.append(EvalTask(key, protocol, dataset, reader(datasets_root)))
        except DatasetNotFound as absent:
            skipped.append(SkippedTask(key, str(absent)))
    return tasks, skipped


def plan_tasks(
    protocols: tuple[str, ...], synth: EvalData | None, datasets_root: Path | None
) -> tuple[list[EvalTask], list[SkippedTask]]:
    """Every task of the named protocols, in protocol order."""
    tasks, skipped = [], []
    for protocol in protocols:
        found, absent = protocol_tasks(protocol, synth, datasets_root)
        tasks += found
        skipped += absent
    return tasks, skipped
