"""What a protocol declares about itself, in its own folder (`protocols/<name>/entry.py`).

Everything the planner, the runner, the CLI and the report need to know of one protocol sits
in its `ENTRY`, so adding a protocol adds a folder and touches no central table
(`levl_eval.protocols.registry` finds the folders).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levl_eval.columns import Column
from levl_eval.data.splits import EvalData
from levl_eval.figure import Plot
from levl_eval.protocols.base import EvalProtocol


def no_options(options: Any, dataset: str) -> dict:
    """Constructor options of a protocol that takes none from the command line."""
    return {}


@dataclass(frozen=True)
class ProtocolEntry:
    """One protocol's registration.

    `synth_task` turns the synthetic world into the protocol's task data (raising
    DatasetNotFound when the world lacks a member); `real_datasets` maps a dataset name to its
    reader of `--datasets ROOT`; `columns` are the report's headline numbers of any task of the
    protocol, `task_columns` (by dataset name) replace them for one dataset, `optional_columns`
    show only when some encoder has a value; `gain_metrics` get a `gain_over_random`;
    `options(eval_options, dataset)` are the constructor options the command line sets;
    `check_inputs(eval_options)` runs once before any feature extraction when a task of the
    protocol is planned (a bad input fails in one line, not after hours); `plots(report)` are
    the protocol's own figures beside the bar charts;
    `paper_deviation(result, task)` says why one result (report.json's, with its task's
    description) did not run under the paper's protocol, so the paper's number for it is not
    comparable (None: it did; levl_eval.paper);
    `order` places the protocol in `levl-eval all`, and `opt_in` leaves it out unless asked.
    """

    protocol: type[EvalProtocol]
    order: int
    synth_task: Callable[[EvalData], Any]
    real_datasets: Mapping[str, Callable[[Path], Any]]
    columns: tuple[Column, ...]
    task_columns: Mapping[str, tuple[Column, ...]] = field(default_factory=dict)
    optional_columns: tuple[Column, ...] = ()
    gain_metrics: tuple[str, ...] = ()
    readout_table: tuple[str, str, str] | None = None  # (heading, metric key, metric label)
    options: Callable[[Any, str], dict] = no_options
    check_inputs: Callable[[Any], None] | None = None
    plots: Callable[[dict], list[Plot]] | None = None
    paper_deviation: Callable[[dict, dict], str | None] | None = None
    opt_in: bool = False

    @property
    def name(self) -> str:
        return self.protocol.name
