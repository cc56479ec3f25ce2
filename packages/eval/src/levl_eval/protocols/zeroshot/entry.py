"""The zeroshot protocol's registration: its synthetic task (the world itself), the
classification datasets, its columns."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.protocols.entry import ProtocolEntry
from levl_eval.protocols.zeroshot.plots import confusion_plots
from levl_eval.protocols.zeroshot.protocol import ZeroShot


def zeroshot_options(options, dataset: str) -> dict:
    return {"class_names": options.class_names}


ENTRY = ProtocolEntry(
    protocol=ZeroShot,
    order=10,
    synth_task=lambda data: data,
    real_datasets=CLASSIFICATION,
    columns=(Column("zero-shot top-1", ("top1",)), Column("zero-shot top-5", ("top5",)),
             Column("zero-shot mean recall", ("mean_per_class_recall",))),
    readout_table=("Zero-shot readouts", "top1", "top-1"),
    options=zeroshot_options,
    plots=confusion_plots,
)
