"""The depth task of a synthetic world (`levl-data synth`; levl_eval.data.world says what it
stores)."""

from __future__ import annotations

from levl_eval.data.splits import EvalData
from levl_eval.errors import DatasetNotFound
from levl_eval.protocols.depth.data import DepthData


def synth_depth(data: EvalData) -> DepthData:
    """Never: the synthetic world draws flat scenes without depth, so depth is always skipped."""
    raise DatasetNotFound(f"{data.root} (the synthetic world has no depth maps: depth runs on "
                          "NYU Depth v2, pass --datasets ROOT holding nyu/)")
