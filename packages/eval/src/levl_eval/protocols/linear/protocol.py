"""Linear probe on the frozen CLS feature (METHOD.md, "Evaluation protocols"), and on request
the MLP and attentive probes of `levl_eval.probes` beside it.

CLS feature → L2-normalise → standardise with the train split's mean/std (std clamped at 1e-8)
→ nn.Linear without bias, AdamW lr 0.1, weight decay 1e-4, batch 4096, 50 epochs, constant lr.
Features are extracted once and kept (mapped from disk), so the 50 epochs cost only matrix
products; each batch is standardised as it is read (no standardised copy of the split is made).
Seeded init and shuffling make a rerun give the same numbers.

Every probe's images go through `geometry` (default `levl_eval.geometry.PAPER_PROBE`: shorter
side 256 bicubic, centre crop 224, the checkpoint's own mean/std; `levl-eval` passes the
checkpoint's own geometry on the synthetic world). The training split is used whole unless
`train_per_class_cap` is given (at most N images per class, evenly spaced; real datasets only).
Both are recorded in each probe's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.datasets.files import per_class_capped
from levl_eval.errors import EvalError
from levl_eval.features.types import FeatureSource, SplitFeatures
from levl_eval.geometry import PAPER_PROBE, ImageGeometry
from levl_eval.heads import HeadTraining, seeded_linear
from levl_eval.probes import (
    PROBE_NAMES,
    AttentiveProbeSettings,
    MLPProbeSettings,
    attentive_probe_metrics,
    batched_metrics,
    mlp_probe_metrics,
    train_classifier,
)
from levl_eval.protocols.base import EvalProtocol, checked_image_features, split_sizes
from levl_eval.standardize import Standardizer


@dataclass(frozen=True)
class LinearProbeSettings:
    """The paper's probe settings; every field lands in the report."""

    lr: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 4096
    epochs: int = 50
    seed: int = 0
    std_clamp: float = 1e-8


def train_linear_probe(
    inputs: Callable[[torch.Tensor], torch.Tensor], width: int, labels_N: torch.Tensor,
    num_classes: int, settings: LinearProbeSettings, device: str = "cpu",
) -> nn.Linear:
    """Fit the classifier (no bias) by minibatch cross-entropy at a constant learning rate;
    `inputs(indices_B)` gives the batch's standardised features on `device`
    (`Standardizer.reader`: standardised a batch at a time, never the whole split)."""
    probe = seeded_linear(width, num_classes, settings.seed, bias=False)
    return train_classifier(probe, inputs, labels_N.to(device), HeadTraining.of(settings),
                            device, desc="linear probe")


@dataclass(frozen=True)
class FittedProbe:
    """A trained probe with the standardisation it was trained under; scores any feature set
    a batch of `batch_size` rows at a time."""

    standardize: Standardizer
    probe: nn.Linear
    device: str = "cpu"
    batch_size: int = LinearProbeSettings.batch_size

    @classmethod
    def fit(
        cls, train_ND: torch.Tensor, train_labels_N: torch.Tensor, num_classes: int,
        settings: LinearProbeSettings, device: str = "cpu",
    ) -> FittedProbe:
        standardize = Standardizer.fit(train_ND, settings.std_clamp)
        probe = train_linear_probe(standardize.reader(train_ND, device), train_ND.shape[1],
                                   train_labels_N, num_classes, settings, device)
        return cls(standardize, probe, device, settings.batch_size)

    def metrics(self, features_ND: torch.Tensor, labels_N: torch.Tensor) -> dict:
        return batched_metrics(self.probe, self.standardize.reader(features_ND, self.device),
                               labels_N, self.probe.out_features, self.batch_size)


def linear_probe_metrics(
    train_ND: torch.Tensor, train_labels_N: torch.Tensor,
    test_ND: torch.Tensor, test_labels_N: torch.Tensor,
    num_classes: int, settings: LinearProbeSettings, device: str = "cpu",
) -> dict:
    """Train on the train features, score train and test (train accuracy shows under-fitting)."""
    fitted = FittedProbe.fit(train_ND, train_labels_N, num_classes, settings, device)
    metrics = fitted.metrics(test_ND, test_labels_N)
    metrics["train_top1"] = fitted.metrics(train_ND, train_labels_N)["top1"]
    return metrics


class LinearProbe(EvalProtocol):
    """Probes trained on eval-train features, scored on eval-test: the linear probe on CLS (the
    headline), and on request the MLP probe on CLS and the attentive probe on patch tokens.

    Every probe run is its own entry under `probes` with its settings; the top-level metrics are
    the linear probe's (absent when it was not asked for). All probes read their images through
    `geometry` and train on the split `train_per_class_cap` leaves (None: the whole split).
    """

    name: ClassVar[str] = "linear"

    def __init__(
        self, settings: LinearProbeSettings | None = None, device: str = "cpu",
        probes: tuple[str, ...] = ("linear",), mlp: MLPProbeSettings | None = None,
        attentive: AttentiveProbeSettings | None = None, geometry: ImageGeometry = PAPER_PROBE,
        train_per_class_cap: int | None = None,
    ) -> None:
        super().__init__(device)
        self.probe_settings = settings or LinearProbeSettings()
        self.mlp_settings = mlp or MLPProbeSettings()
        self.attentive_settings = attentive or AttentiveProbeSettings()
        self.probes = check_probe_names(probes)
        self.geometry = geometry
        if train_per_class_cap is not None and train_per_class_cap < 1:
            raise EvalError(f"train_per_class_cap {train_per_class_cap}: must be at least 1 "
                            "(or None for the whole training split)")
        self.train_per_class_cap = train_per_class_cap

    def data_settings(self) -> dict:
        """What every probe's images are: their geometry and the training split's cap."""
        return {"geometry": self.geometry.describe(), "train_per_class_cap": self.train_per_class_cap}

    def settings(self) -> dict:
        return {
            **self.data_settings(),
            **asdict(self.probe_settings),
            "feature": "final-norm CLS token",
            "preprocessing": "L2-normalise, standardise with train mean/std",
            "classifier": "nn.Linear without bias",
            "optimizer": "AdamW",
            "schedule": "constant",
            "loss": "cross-entropy",
            "top5": "top-k with k = min(5, num_classes)",
            "probes": list(self.probes),
        }

    def probe_settings_of(self, probe: str) -> dict:
        """The settings recorded beside one probe's numbers."""
        if probe == "mlp":
            return {**self.data_settings(), **asdict(self.mlp_settings), "feature": "final-norm CLS token",
                    "preprocessing": "L2-normalise, standardise with train mean/std",
                    "classifier": "Linear -> GELU -> Linear", "optimizer": "AdamW",
                    "schedule": "cosine to 0 over all steps", "loss": "cross-entropy"}
        if probe == "attentive":
            return {**self.data_settings(), **asdict(self.attentive_settings),
                    "feature": "final-norm patch tokens",
                    "preprocessing": "standardise per dimension with train-token mean/std",
                    "classifier": "learned query, 1 pre-norm cross-attention block "
                                  "(attention + MLP, residual), LayerNorm, Linear",
                    "optimizer": "AdamW", "schedule": "cosine to 0 over all steps",
                    "loss": "cross-entropy"}
        return {key: value for key, value in self.settings().items() if key != "probes"}

    def run_probe(self, probe: str, encoder: FeatureSource, splits: tuple[EvalSplit, EvalSplit],
                  num_classes: int, train: SplitFeatures, test: SplitFeatures) -> dict:
        """One probe's metrics (train and test features are the CLS ones, labels included) on
        the (train, test) splits they were extracted from."""
        if probe == "mlp":
            return mlp_probe_metrics(train.cls_ND, train.labels_N, test.cls_ND, test.labels_N,
                                     num_classes, self.mlp_settings, self.device)
        if probe == "attentive":
            train_NLD = aligned_tokens(encoder, splits[0], train, self.geometry)
            test_NLD = aligned_tokens(encoder, splits[1], test, self.geometry)
            return attentive_probe_metrics(train_NLD, train.labels_N, test_NLD, test.labels_N,
                                           num_classes, self.attentive_settings, self.device)
        return linear_probe_metrics(train.cls_ND, train.labels_N, test.cls_ND, test.labels_N,
                                    num_classes, self.probe_settings, self.device)

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        splits = (per_class_capped(data.train, self.train_per_class_cap), data.test)
        train, test = (checked_image_features(encoder, split, data.num_classes, self.geometry)
                       for split in splits)
        probes = {probe: {**self.run_probe(probe, encoder, splits, data.num_classes, train, test),
                          "settings": self.probe_settings_of(probe)} for probe in self.probes}
        headline = {k: v for k, v in probes.get("linear", {}).items() if k != "settings"}
        return {
            **headline,
            "probes": probes,
            "settings": self.settings(),
            "data": {
                "train": {**split_sizes(splits[0], train), **capped_sizes(data.train, splits[0])},
                "test": split_sizes(data.test, test),
                "num_classes": data.num_classes,
            },
        }


def check_probe_names(probes: tuple[str, ...]) -> tuple[str, ...]:
    """Known probe names, de-duplicated in order; `all` means every probe."""
    names = PROBE_NAMES if "all" in probes else tuple(dict.fromkeys(probes))
    unknown = [name for name in names if name not in PROBE_NAMES]
    if unknown or not names:
        raise EvalError(f"--probe {unknown[0] if unknown else ''!r}: unknown probe "
                        f"(known: {', '.join(PROBE_NAMES)}, all)")
    return names


def capped_sizes(whole: EvalSplit, used: EvalSplit) -> dict:
    """How many of the split's files a per-class cap left (nothing when none was applied)."""
    if used is whole:
        return {}
    return {"files_before_cap": len(whole.files), "files_after_cap": len(used.files)}


def aligned_tokens(encoder: FeatureSource, split: EvalSplit, images: SplitFeatures,
                   geometry: ImageGeometry) -> torch.Tensor:
    """The split's patch tokens, which must be the same samples, in order, as its CLS features
    (extracted under the same geometry)."""
    tokens_NLD = encoder.patch_features(split, geometry).tokens_NLD
    if tokens_NLD.shape[0] != images.num_samples:
        raise EvalError(f"split {split.name}: {tokens_NLD.shape[0]} patch-token rows but "
                        f"{images.num_samples} CLS rows; the split changed during evaluation")
    return tokens_NLD
