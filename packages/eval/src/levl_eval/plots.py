"""The report's figures (PNG under OUT/plots/), drawn from report.json alone so `levl-eval report
DIR` re-renders them: a bar chart per task comparing the encoders, then each protocol's own
figures (its entry's `plots`: zero-shot confusion matrices, segmentation examples).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global figure state, no
display needed) and each file is written atomically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from levl_eval.figure import Plot, slug
from levl_eval.protocols.registry import ENTRIES

PLOTS_DIR = "plots"
# (title, path into a task's result, unit) of the columns a task's bar chart shows
ColumnsOf = Callable[[str], list[tuple[str, tuple[str, ...], str]]]
# stored value × scale = the value the headline table shows, per unit (levl_eval.report.UNITS)
UNIT_SCALES = {"%": 100.0, "m": 1.0, "ratio": 1.0}
UNIT_AXIS = {"%": "percent", "m": "metres", "ratio": "ratio"}


def value_at(result: dict | None, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result if isinstance(result, int | float) else None


@dataclass(frozen=True)
class BarColumn:
    title: str
    unit: str
    values: dict[str, float | None]  # encoder name -> stored value (None: no bar)


def draw_bars(figure: Figure, title: str, columns: list[BarColumn]) -> None:
    """Grouped bars, one group per metric and one bar per encoder, with one panel per unit so
    a depth error in metres never shares an axis with percentages."""
    units = list(dict.fromkeys(column.unit for column in columns))
    panels = figure.subplots(1, len(units), squeeze=False,
                             width_ratios=[sum(c.unit == u for c in columns) for u in units])[0]
    for axes, unit in zip(panels, units, strict=True):
        draw_bar_panel(axes, [column for column in columns if column.unit == unit], unit)
    handles, labels = panels[0].get_legend_handles_labels()
    rows = (len(labels) + 1) // 2  # the legend sits below the panels, two encoders a row
    figure.legend(handles, labels, loc="lower center", ncols=2, fontsize="small")
    figure.suptitle(title)
    figure.tight_layout(rect=(0, min(0.06 * rows, 0.4), 1, 1))


def draw_bar_panel(axes, columns: list[BarColumn], unit: str) -> None:
    names = list(columns[0].values)
    width = 0.8 / max(len(names), 1)
    for index, name in enumerate(names):
        heights = [np.nan if c.values[name] is None else UNIT_SCALES[unit] * c.values[name]
                   for c in columns]
        axes.bar(np.arange(len(columns)) + index * width, heights, width, label=name)
    axes.set_xticks(np.arange(len(columns)) + 0.4 - width / 2, [c.title for c in columns],
                    rotation=15, ha="right")
    axes.set_ylabel(UNIT_AXIS[unit])


def bar_columns(report: dict, task: str, columns_of: ColumnsOf) -> list[BarColumn]:
    return [BarColumn(title, unit, {enc["name"]: value_at(enc.get("protocols", {}).get(task), path)
                                    for enc in report["encoders"]})
            for title, path, unit in columns_of(task)]


def bar_plots(report: dict, columns_of: ColumnsOf) -> list[Plot]:
    """One bar chart per task with at least one value."""
    plots = []
    for task in report.get("protocols", []):
        columns = bar_columns(report, task, columns_of)
        if all(value is None for column in columns for value in column.values.values()):
            continue
        plots.append(Plot(f"{task}: encoders compared", f"bars-{slug(task)}.png",
                          lambda fig, t=task, c=columns: draw_bars(fig, t, c)))
    return plots


def plan_plots(report: dict, columns_of: ColumnsOf) -> list[Plot]:
    """Every figure the report gets, in the order report.md shows them: the bar charts, then
    each protocol's own figures (its entry's `plots`), in protocol order."""
    own = [plot for entry in ENTRIES.values() if entry.plots is not None for plot in entry.plots(report)]
    return bar_plots(report, columns_of) + own


def figure_size(plot: Plot, report: dict) -> tuple[float, float]:
    if plot.size is not None:
        return plot.size
    return (8.0, 4.5 + 0.3 * ((len(report["encoders"]) + 1) // 2))  # room for the legend


def write_plots(out_dir: Path, report: dict, columns_of: ColumnsOf) -> list[Plot]:
    """Draw every planned figure into out_dir/plots/ (atomically) and drop PNGs no longer planned."""
    plots = plan_plots(report, columns_of)
    plots_dir = Path(out_dir) / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    for plot in plots:
        figure = Figure(figsize=figure_size(plot, report))
        FigureCanvasAgg(figure)
        plot.draw(figure)
        tmp = plots_dir / f".{plot.filename}.{uuid.uuid4().hex[:12]}.tmp.png"
        try:
            figure.savefig(tmp, dpi=100)
            os.replace(tmp, plots_dir / plot.filename)
        finally:
            tmp.unlink(missing_ok=True)
    planned = {plot.filename for plot in plots}
    for stale in plots_dir.glob("*.png"):
        if stale.name not in planned:
            stale.unlink()
    return plots


def plot_lines(report: dict, columns_of: ColumnsOf) -> list[str]:
    """report.md's Plots section: one linked image per figure."""
    plots = plan_plots(report, columns_of)
    if not plots:
        return []
    return ["## Plots", "", *(f"![{plot.title}]({PLOTS_DIR}/{plot.filename})\n" for plot in plots)]
