"""`gain_over_random`: a checkpoint's numbers minus those of its random-init baseline.

The runner evaluates one randomly initialised encoder of the same architecture beside every
checkpoint, under the same protocol settings (for `vlm`: the same bridge and budget). For the
protocols listed here the difference is written into the checkpoint's own result, so a report
reader sees how much of a number the pretraining earned rather than the bridge or LLM alone.
"""

from __future__ import annotations

GAIN_METRICS: dict[str, tuple[str, ...]] = {
    "vlm": ("vqa_accuracy", "exact_match", "pope_accuracy", "pope_f1"),
}


def metric_gains(result: dict, baseline: dict, metrics: tuple[str, ...]) -> dict:
    """result − baseline for each metric both report as a number."""
    return {name: result[name] - baseline[name] for name in metrics
            if isinstance(result.get(name), float | int) and isinstance(baseline.get(name), float | int)}


def add_gains_over_random(entries: list[dict]) -> None:
    """Write `gain_over_random` into each checkpoint result whose baseline ran the same task."""
    by_name = {entry["name"]: entry for entry in entries}
    for baseline in (entry for entry in entries if "baseline_for" in entry):
        for name in baseline["baseline_for"]:
            for key, result in by_name[name]["protocols"].items():
                metrics = GAIN_METRICS.get(key.partition(":")[0])
                if metrics and key in baseline["protocols"]:
                    gains = metric_gains(result, baseline["protocols"][key], metrics)
                    result["gain_over_random"] = {**gains, "baseline": baseline["name"]}
