"""The paper's ViT-B/16 numbers, shown beside levl's as a reference column in report.md.

Source: the results table of METHOD.md ("Evaluation protocols"), from the LeVLJEPA paper
(arXiv 2607.00784): ViT-B/16 encoders trained on DataComp-L with LeVLJEPA, InfoNCE and SigLIP.
They are kept here, and only here, so report.md and report.json read one copy.

Each number is matched to a levl task by its task key (`protocol:dataset`, levl_eval.tasks) and
the metric's key in that task's result, so the synthetic world (task key without a dataset) and
datasets the paper does not report never get one. The paper prints percentages (IN-9 drops in
percentage points); levl stores these metrics as fractions (top-1 0.6542, mIoU 0.2315, a drop
0.0595) and report.md shows them ×100, so the numbers are divided by 100 once, here, and then
shown exactly like levl's own.

A number is only comparable to a result produced under the paper's protocol. Each protocol's
entry says what in a result departs from it (`ProtocolEntry.paper_deviation`: the probes'
`--train-per-class-cap` when it left images out, zero-shot's `--class-names dataset` where
curated names exist); for such a task the paper's numbers are withheld, and
`not_comparable` says which and why, read from the results themselves, so a merged report of
runs under different settings is judged by what each ran.

Left out: the frozen-VLM gains over a random encoder. The paper's depend on the LLM (Llama-3.2-1B,
Qwen2.5-1.5B; levl's default is SmolLM2-135M) and do not say which POPE metric they are, so a
number beside levl's would not be comparable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from levl_eval.protocols.registry import ENTRIES

PAPER_MODELS = ("LeVLJEPA", "InfoNCE", "SigLIP")
PAPER_SOURCE = ("LeVLJEPA paper (arXiv 2607.00784), ViT-B/16 trained on DataComp-L; "
                "METHOD.md, Evaluation protocols")
PAPER_UNIT = "fraction, as levl stores these metrics (the paper prints them in percent)"

# (task key, metric) -> the paper's LeVLJEPA / InfoNCE / SigLIP numbers in percent, as printed.
PAPER_PERCENT: dict[tuple[str, str], tuple[float, float, float]] = {
    ("segmentation:ade20k", "miou"): (23.15, 20.90, 19.24),
    ("segmentation:cocostuff", "miou"): (31.10, 29.02, 28.88),
    ("background:in9", "drop_mixed_same"): (5.95, 6.57, 7.03),
    ("background:in9", "drop_mixed_rand"): (17.21, 18.67, 18.09),
    ("linear:imagenet", "top1"): (65.42, 65.75, 66.34),
    ("linear:places365", "top1"): (36.07, 37.11, 36.81),
    ("linear:aircraft", "top1"): (46.38, 44.10, 47.46),
    ("linear:pets", "top1"): (81.28, 82.86, 82.64),
    ("zeroshot:imagenet", "top1"): (42.45, 47.32, 50.78),
    ("zeroshot:places365", "top1"): (29.97, 34.46, 33.76),
    ("zeroshot:aircraft", "top1"): (7.65, 8.10, 10.62),
    ("zeroshot:pets", "top1"): (59.63, 68.98, 77.27),
}


def as_stored(percent: float) -> float:
    """A paper percentage in levl's stored unit (a fraction), rounded off float noise."""
    return round(percent / 100.0, 6)


def paper_deviation(task: str, encoders: Iterable[dict], described: Mapping[str, dict]) -> str | None:
    """Why the task's results did not run under the paper's protocol (the reasons of every
    encoder that ran it, once each), or None when they all did."""
    entry = ENTRIES.get(task.partition(":")[0])
    if entry is None or entry.paper_deviation is None:
        return None
    reasons = (entry.paper_deviation(enc.get("protocols", {})[task], described.get(task, {}))
               for enc in encoders if task in enc.get("protocols", {}))
    found = list(dict.fromkeys(reason for reason in reasons if reason))
    return "; ".join(found) or None


def paper_reference(tasks: Iterable[str], encoders: Iterable[dict] = (),
                    described: Mapping[str, dict] | None = None) -> dict:
    """report.json's `paper_reference`: the paper's numbers for the tasks run that it reports,
    `{task: {metric: {model: value}}}` in levl's stored unit, and under `not_comparable`
    `{task: {reason, metrics}}` for those whose `encoders`' results (with the tasks'
    descriptions, `described`) ran under another protocol than the paper's, their numbers
    withheld; empty when no task matches."""
    run, encoders = set(tasks), list(encoders)
    matched: dict[str, dict[str, dict[str, float]]] = {}
    for (task, metric), values in PAPER_PERCENT.items():
        if task in run:
            matched.setdefault(task, {})[metric] = {
                model: as_stored(value) for model, value in zip(PAPER_MODELS, values, strict=True)}
    if not matched:
        return {}
    withheld = {}
    for task in list(matched):
        reason = paper_deviation(task, encoders, described or {})
        if reason is not None:
            withheld[task] = {"reason": reason, "metrics": list(matched.pop(task))}
    return {"source": PAPER_SOURCE, "models": list(PAPER_MODELS), "unit": PAPER_UNIT,
            "tasks": matched, **({"not_comparable": withheld} if withheld else {})}
