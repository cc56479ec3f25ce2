"""The linear protocol's registration: its synthetic task (the world itself), the classification
datasets, its columns."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.geometry import SYNTH, probe_geometry
from levl_eval.protocols.entry import ProtocolEntry
from levl_eval.protocols.linear.protocol import LinearProbe


def linear_options(options, dataset: str) -> dict:
    """The probes read the paper's geometry on real datasets and the checkpoint's own on the
    synthetic world (levl_eval.geometry); the per-class cap applies to real datasets only."""
    cap = None if dataset == SYNTH else options.train_per_class_cap
    return {"probes": options.probes, "geometry": probe_geometry(dataset), "train_per_class_cap": cap}


def capped_train_set(result: dict, task: dict) -> str | None:
    """The paper's probes train on the whole train split: a per-class cap that left out images
    makes the numbers another protocol's (a cap above every class's count changes nothing)."""
    cap = result.get("settings", {}).get("train_per_class_cap")
    train = result.get("data", {}).get("train", {})
    before, after = train.get("files_before_cap"), train.get("files_after_cap")
    if cap is None or before is None or after is None or after >= before:
        return None
    return (f"train set capped at {cap} images/class ({after} of {before} images; "
            "the paper's probe trains on the whole split)")


ENTRY = ProtocolEntry(
    protocol=LinearProbe,
    order=20,
    synth_task=lambda data: data,
    real_datasets=CLASSIFICATION,
    columns=(Column("linear top-1", ("top1",)), Column("linear top-5", ("top5",)),
             Column("linear mean recall", ("mean_per_class_recall",))),
    # shown only when some encoder has a value (probes run on request, `--probe`)
    optional_columns=(Column("MLP probe top-1", ("probes", "mlp", "top1")),
                      Column("attentive probe top-1", ("probes", "attentive", "top1"))),
    options=linear_options,
    paper_deviation=capped_train_set,
)
