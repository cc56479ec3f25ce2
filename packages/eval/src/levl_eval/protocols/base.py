"""What every protocol shares: the result layout and label checks.

A protocol is a class with a `name` and `run(encoder, data) -> dict`; the dict holds its headline
metrics at the top level (`top1`, `top5`, `mean_per_class_recall`, ...) beside `settings` and
`data` (dataset sizes), so a report shows any protocol's numbers with the exact settings and
data that produced them; protocol-specific details go under their own keys.
"""

from __future__ import annotations

from typing import ClassVar

from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.errors import EvalError
from levl_eval.features.types import FeatureSource, SplitFeatures
from levl_eval.geometry import ImageGeometry


class EvalProtocol:
    """Base class: subclasses set `name` and implement `run`."""

    name: ClassVar[str] = ""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        raise NotImplementedError

    def settings(self) -> dict:
        """Every knob that changes the numbers, recorded in the report."""
        return {}


def checked_image_features(
    encoder: FeatureSource, split: EvalSplit, num_classes: int, geometry: ImageGeometry | None = None
) -> SplitFeatures:
    """The split's features (under `geometry`; None: the checkpoint's own), refusing labels
    outside the task's class list (a wrong manifest)."""
    features = encoder.image_features(split, geometry)
    if features.num_samples == 0:
        raise EvalError(f"split {split.name}: no samples were read; check its manifest and shards")
    labels_N = features.labels_N
    if int(labels_N.min()) < 0 or int(labels_N.max()) >= num_classes:
        raise EvalError(
            f"split {split.name}: labels span {int(labels_N.min())}..{int(labels_N.max())} but "
            f"the manifest lists {num_classes} classes; fix the manifest's labels.classes"
        )
    return features


def split_sizes(split: EvalSplit, features: SplitFeatures) -> dict:
    """Samples used and skipped for one split, for the report."""
    return {"samples": features.num_samples, "skipped": dict(features.skipped)}
