"""The background protocol's registration: its synthetic task, ImageNet-9, its columns."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.in9 import read_in9
from levl_eval.geometry import probe_geometry
from levl_eval.protocols.background.protocol import BackgroundRobustness
from levl_eval.protocols.background.synth import synth_background
from levl_eval.protocols.entry import ProtocolEntry


def background_options(section: None, dataset: str) -> dict:
    return {"geometry": probe_geometry(dataset)}


ENTRY = ProtocolEntry(
    protocol=BackgroundRobustness,
    order=50,
    synth_task=synth_background,
    real_datasets={"in9": read_in9},
    columns=(Column("bg original", ("original_top1",)), Column("bg drop same", ("drop_mixed_same",)),
             Column("bg drop rand", ("drop_mixed_rand",))),
    options=background_options,
)
