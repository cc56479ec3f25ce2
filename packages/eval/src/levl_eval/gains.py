"""`gain_over_random`: a checkpoint's numbers minus those of its random-init baseline.

The runner evaluates one randomly initialised encoder of the same architecture beside every
checkpoint, under the same protocol settings (for `vlm`: the same bridge and budget). For the
metrics a protocol's entry lists as `gain_metrics` the difference is written into the
checkpoint's own result, so a report reader sees how much of a number the pretraining earned rather than the bridge or LLM alone.
"""

from __future__ import annotations

from levl_eval.protocols.registry import ENTRIES


def gain_metrics(protocol: str) -> tuple[str, ...]:
    """The metrics of `protocol` that get a gain over random (none for an unknown name)."""
    entry = ENTRIES.get(protocol)
    return entry.gain_metrics if entry else ()


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
                metrics = gain_metrics(key.partition(":")[0])
                if metrics and key in baseline["protocols"]:
                    gains = metric_gains(result, baseline["protocols"][key], metrics)
                    result["gain_over_random"] = {**gains, "baseline": baseline["name"]}
