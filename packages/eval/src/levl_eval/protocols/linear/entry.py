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
)
