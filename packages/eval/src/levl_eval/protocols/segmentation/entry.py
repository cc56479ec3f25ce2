"""The segmentation protocol's registration: its synthetic task, ADE20K and COCO-Stuff, its
columns."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.ade20k import read_ade20k
from levl_eval.datasets.cocostuff import read_cocostuff
from levl_eval.protocols.entry import ProtocolEntry
from levl_eval.protocols.segmentation.plots import segmentation_plots
from levl_eval.protocols.segmentation.protocol import LinearSegmentation
from levl_eval.protocols.segmentation.synth import synth_segmentation

ENTRY = ProtocolEntry(
    protocol=LinearSegmentation,
    order=30,
    synth_task=synth_segmentation,
    real_datasets={"ade20k": read_ade20k, "cocostuff": read_cocostuff},
    columns=(Column("seg mIoU", ("miou",)), Column("seg pixel acc", ("pixel_accuracy",))),
    plots=segmentation_plots,
)
