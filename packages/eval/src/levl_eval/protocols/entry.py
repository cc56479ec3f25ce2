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


def no_options(section: Any, dataset: str) -> dict:
    """Constructor options of a protocol that takes none from the suite."""
    return {}


@dataclass(frozen=True)
class CliOption:
    """One command-line shorthand of a protocol: `flag` sets `field` of the protocol's suite
    section (`--probe` sets `linear.probes`). `type` is the value's (str, int or Path; a Path
    is recorded as text), `repeatable` takes the flag several times (the field gets a tuple),
    `min` bounds an int. levl-eval adds it to `all` and to the protocol's own command."""

    flag: str
    field: str
    type: type
    help: str
    repeatable: bool = False
    min: int | None = None

    @property
    def param(self) -> str:
        """The option's Python name (`--class-names` -> `class_names`)."""
        return self.flag.lstrip("-").replace("-", "_")

    def suite_value(self, given: Any) -> Any:
        """The suite field's value for what the command line gave (None: not given)."""
        if given is None or (self.repeatable and not given):
            return None
        if self.repeatable:
            return tuple(given)
        return str(given) if isinstance(given, Path) else given


@dataclass(frozen=True)
class ProtocolEntry:
    """One protocol's registration.

    `synth_task` turns the synthetic world into the protocol's task data (raising
    DatasetNotFound when the world lacks a member); `real_datasets` maps a dataset name to its
    reader of `--datasets ROOT`; `columns` are the report's headline numbers of any task of the
    protocol, `task_columns` (by dataset name) replace them for one dataset, `optional_columns`
    show only when some encoder has a value; `gain_metrics` get a `gain_over_random`;
    `section` is the dataclass of the protocol's own fields in an evaluation suite
    (`levl_eval.suites`: `--set <name>.<field>=...`), with a `checked()` method that returns it
    normalised or raises EvalError in one line; `cli_options` are its command-line shorthands;
    `options(section, dataset)` are the protocol's constructor options on one task's dataset
    (section None for a protocol without one); `check_inputs(section, device)` runs once before
    any feature extraction when a task of the protocol is planned (a bad input fails in one
    line, not after hours); `plots(report)` are
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
    section: type | None = None
    cli_options: tuple[CliOption, ...] = ()
    options: Callable[[Any, str], dict] = no_options
    check_inputs: Callable[[Any, str], None] | None = None
    plots: Callable[[dict], list[Plot]] | None = None
    paper_deviation: Callable[[dict, dict], str | None] | None = None
    opt_in: bool = False

    @property
    def name(self) -> str:
        return self.protocol.name
