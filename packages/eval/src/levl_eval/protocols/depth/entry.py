"""The depth protocol's registration: its synthetic task, NYUv2, its columns (metres and ratios,
not percent)."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.nyuv2 import read_nyuv2
from levl_eval.protocols.depth.protocol import LinearDepth
from levl_eval.protocols.depth.synth import synth_depth
from levl_eval.protocols.entry import ProtocolEntry

ENTRY = ProtocolEntry(
    protocol=LinearDepth,
    order=40,
    synth_task=synth_depth,
    real_datasets={"nyu": read_nyuv2},
    columns=(Column("depth RMSE", ("rmse",), "m"), Column("depth AbsRel", ("abs_rel",), "ratio"),
             Column("depth δ<1.25", ("delta1",))),
)
