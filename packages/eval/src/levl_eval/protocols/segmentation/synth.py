"""The segmentation task of a synthetic world (`levl-data synth`; levl_eval.data.world says
what it stores)."""

from __future__ import annotations

from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.data.world import require_members
from levl_eval.errors import DatasetNotFound
from levl_eval.protocols.segmentation.data import SegmentationData

MASK_MEMBER = "mask.png"  # 0 = background, 1 + class index: every pixel labelled


def synth_segmentation(data: EvalData) -> SegmentationData:
    """eval-train / eval-test with their masks; classes from `labels.segmentation_classes`."""
    for split in (data.train, data.test):
        require_members(split, [MASK_MEMBER])
    classes = (data.test.manifest.labels or {}).get("segmentation_classes")
    if not classes:
        raise DatasetNotFound(f"{data.test.manifest.path} (labels.segmentation_classes)")

    def with_masks(split: EvalSplit) -> EvalSplit:
        return EvalSplit(f"{split.name}/masks", split.manifest, mask_member=MASK_MEMBER)

    return SegmentationData("synth", with_masks(data.train), with_masks(data.test),
                            tuple(classes), root=data.root)
