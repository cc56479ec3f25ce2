"""The retrieval task of a synthetic world (`levl-data synth`; levl_eval.data.world says
what it stores)."""

from __future__ import annotations

from levl_eval.data.splits import EvalData
from levl_eval.protocols.retrieval.data import RetrievalData


def synth_retrieval(data: EvalData) -> RetrievalData:
    """eval-test images against their own captions (one per image)."""
    return RetrievalData("synth", data.test, root=data.root, notes={"captions_per_image": 1})
