"""The segmentation protocol's figures: examples (image / ground truth / each encoder's
prediction) of each task whose results carry them."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from levl_eval.figure import Plot, slug, tasks_of
from levl_eval.protocols.segmentation.examples import decode_uint8
from levl_eval.protocols.segmentation.metrics import VOID


def draw_segmentation(figure: Figure, title: str, examples: dict, predictions: dict[str, list],
                      num_classes: int) -> None:
    """One row per example: image, ground truth, then each encoder's prediction."""
    rows, names = len(examples["images"]), list(predictions)
    grid = figure.subplots(rows, 2 + len(names), squeeze=False)
    for row in range(rows):
        panels = [("image", decode_uint8(examples["images"][row])),
                  ("ground truth", decode_uint8(examples["ground_truth"][row])),
                  *((name, decode_uint8(predictions[name][row])) for name in names)]
        for axes, (label, array) in zip(grid[row], panels, strict=True):
            if array.ndim == 3:
                axes.imshow(array)
            else:
                axes.imshow(np.ma.masked_equal(array, VOID), cmap="tab20", vmin=0,
                            vmax=max(num_classes - 1, 1), interpolation="nearest")
            axes.set_axis_off()
            if row == 0:
                axes.set_title(label, fontsize="small")
    figure.suptitle(title)


def segmentation_plots(report: dict) -> list[Plot]:
    """Examples of each segmentation task whose results carry them, all encoders side by side."""
    plots = []
    for task in tasks_of(report, "segmentation"):
        results = {enc["name"]: enc.get("protocols", {}).get(task) or {} for enc in report["encoders"]}
        results = {name: result for name, result in results.items()
                   if isinstance(result.get("examples"), dict)}
        if not results:
            continue
        first = next(iter(results.values()))
        predictions = {name: result["examples"]["prediction"] for name, result in results.items()}
        plots.append(Plot(f"{task}: examples", f"segmentation-{slug(task)}.png",
                          lambda fig, t=task, e=first["examples"], p=predictions,
                          c=len(first.get("classes", [])): draw_segmentation(fig, t, e, p, c),
                          size=(2.0 * (2 + len(report["encoders"])), 6.5)))
    return plots
