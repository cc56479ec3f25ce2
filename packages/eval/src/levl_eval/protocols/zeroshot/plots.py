"""The zero-shot protocol's figures: each encoder's confusion matrix, where the protocol stored
one (label sets of at most 20 classes)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from levl_eval.figure import Plot, slug, tasks_of


def draw_confusion(figure: Figure, title: str, counts: list[list[int]], classes: list[str]) -> None:
    """Counts with rows = true class, columns = predicted class, each cell annotated."""
    matrix = np.asarray(counts)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(ticks, classes, fontsize="small")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(col, row, str(count), ha="center", va="center", fontsize="x-small",
                  color="white" if count > matrix.max() / 2 else "black")
    figure.colorbar(image, ax=axes)
    axes.set_title(title)
    figure.tight_layout()


def confusion_plots(report: dict) -> list[Plot]:
    """Each encoder's zero-shot confusion matrix, where the protocol stored one."""
    plots = []
    for task in tasks_of(report, "zeroshot"):
        for index, enc in enumerate(report["encoders"]):
            result = enc.get("protocols", {}).get(task) or {}
            if "confusion" not in result or "confusion_classes" not in result:
                continue
            title = f"{task} confusion: {enc['name']}"
            plots.append(Plot(title, f"confusion-{slug(task)}-{index}.png",
                              lambda fig, t=title, r=result: draw_confusion(
                                  fig, t, r["confusion"], r["confusion_classes"]),
                              size=(7.0, 5.5)))
    return plots
