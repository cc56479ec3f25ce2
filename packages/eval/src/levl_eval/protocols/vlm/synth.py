"""The vlm task of a synthetic world (`levl-data synth`; levl_eval.data.world says what it
stores)."""

from __future__ import annotations

from levl_eval.data.splits import EvalData
from levl_eval.errors import DatasetNotFound
from levl_eval.protocols.vlm.data import VQAData


def synth_vlm(data: EvalData) -> VQAData:
    """eval-train's questions train the bridge, eval-test's score it (a world whose manifest has
    no `labels.answers` predates the QA pairs)."""
    for split in (data.train, data.test):
        if not (split.manifest.labels or {}).get("answers"):
            raise DatasetNotFound(f"{split.manifest.path} (labels.answers: no QA pairs)")
    return VQAData("synth", data.train, data.test, root=data.root,
                   notes={"questions": "attribute, count, exists (POPE random/popular/adversarial)"})
