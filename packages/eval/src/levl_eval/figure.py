"""One report figure (`Plot`) and the helpers every figure planner shares; the planners live
in levl_eval.plots (bar charts) and in the protocols' folders (`protocols/<name>/plots.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from matplotlib.figure import Figure


@dataclass(frozen=True)
class Plot:
    """One figure: its title in report.md, its file under plots/, and how to draw it."""

    title: str
    filename: str
    draw: Callable[[Figure], None]
    size: tuple[float, float] | None = None  # inches; None: a bar chart's, sized by its legend


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def tasks_of(report: dict, protocol: str) -> list[str]:
    """The report's task keys of one protocol (`protocol` or `protocol:dataset`)."""
    return [task for task in report.get("protocols", []) if task.partition(":")[0] == protocol]
