"""Background robustness, the ImageNet-9 backgrounds challenge (METHOD.md, "ImageNet-9").

The linear probe of `protocols.linear` (same settings, same code) is trained once on original
images, then scored on the same test images as stored (original), with a background of the
class's own kind (mixed_same) and with a background of another class (mixed_rand). A model
that reads the object loses little on mixed_rand; one that reads the background loses a lot.
Drops are original − variant top-1, in accuracy units; `bg_gap` = mixed_same − mixed_rand.
Every image goes through the probes' `geometry` (`levl_eval.geometry`; recorded in settings).
"""

from __future__ import annotations

from typing import ClassVar

from levl_eval.errors import EvalDataError
from levl_eval.features.types import FeatureSource
from levl_eval.geometry import PAPER_PROBE, ImageGeometry
from levl_eval.protocols.background.data import VARIANTS, BackgroundData
from levl_eval.protocols.base import EvalProtocol, checked_image_features, split_sizes
from levl_eval.protocols.linear.protocol import FittedProbe, LinearProbe, LinearProbeSettings


def background_summary(variants: dict[str, dict]) -> dict:
    """Top-1 per variant, the drops from original and the mixed_same − mixed_rand gap."""
    top1 = {name: variants[name]["top1"] for name in VARIANTS}
    return {
        **{f"{name}_top1": value for name, value in top1.items()},
        "drop_mixed_same": top1["original"] - top1["mixed_same"],
        "drop_mixed_rand": top1["original"] - top1["mixed_rand"],
        "bg_gap": top1["mixed_same"] - top1["mixed_rand"],
    }


class BackgroundRobustness(EvalProtocol):
    """Probe on original-background training images; accuracy on each background variant."""

    name: ClassVar[str] = "background"

    def __init__(self, settings: LinearProbeSettings | None = None, device: str = "cpu",
                 geometry: ImageGeometry = PAPER_PROBE) -> None:
        super().__init__(device)
        self.probe = LinearProbe(settings=settings, device=device, geometry=geometry)

    def settings(self) -> dict:
        return {**self.probe.settings(), "trained_on": "original images",
                "variants": list(VARIANTS), "drop": "original top-1 minus variant top-1"}

    def run(self, encoder: FeatureSource, data: BackgroundData) -> dict:
        missing = [name for name in VARIANTS if name not in data.variants]
        if missing:
            raise EvalDataError(f"{data.dataset}: no {missing[0]} variant to score")
        geometry = self.probe.geometry
        train = checked_image_features(encoder, data.train, data.num_classes, geometry)
        fitted = FittedProbe.fit(train.cls_ND, train.labels_N, data.num_classes,
                                 self.probe.probe_settings, self.device)
        tests = {name: checked_image_features(encoder, data.variants[name], data.num_classes, geometry)
                 for name in VARIANTS}
        variants = {name: fitted.metrics(test.cls_ND, test.labels_N) for name, test in tests.items()}
        return {
            **background_summary(variants),
            "train_top1": fitted.metrics(train.cls_ND, train.labels_N)["top1"],
            "variants": variants,
            "settings": self.settings(),
            "data": {
                "dataset": data.dataset, "train_rule": data.train_rule,
                "train": split_sizes(data.train, train),
                **{name: split_sizes(data.variants[name], test) for name, test in tests.items()},
                "num_classes": data.num_classes,
            },
        }
