"""Linear probe on the frozen CLS feature (METHOD.md, "Evaluation protocols"), and on request
the MLP and attentive probes of `levl_eval.probes` beside it.

CLS feature → L2-normalise → standardise with the train split's mean/std (std clamped at 1e-8)
→ nn.Linear without bias, AdamW lr 0.1, weight decay 1e-4, batch 4096, 50 epochs, constant lr.
Features are extracted once and kept, so the 50 epochs cost only matrix products. Seeded init
and shuffling make a rerun give the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.errors import EvalError
from levl_eval.featureset import EvalData, EvalSplit, FeatureSource, SplitFeatures
from levl_eval.metrics import classification_metrics
from levl_eval.probes import (
    PROBE_NAMES,
    AttentiveProbeSettings,
    MLPProbeSettings,
    attentive_probe_metrics,
    mlp_probe_metrics,
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


def seeded_linear(in_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """nn.Linear without bias, weights drawn like torch's default init but from our own seed."""
    layer = nn.Linear(in_dim, num_classes, bias=False)
    bound = 1.0 / in_dim**0.5
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.empty(num_classes, in_dim).uniform_(-bound, bound, generator=generator))
    return layer


def train_linear_probe(
    x_ND: torch.Tensor, labels_N: torch.Tensor, num_classes: int,
    settings: LinearProbeSettings, device: str = "cpu",
) -> nn.Linear:
    """Fit the classifier by minibatch cross-entropy; x_ND is already standardised."""
    x_ND, labels_N = x_ND.to(device), labels_N.to(device)
    probe = seeded_linear(x_ND.shape[1], num_classes, settings.seed).to(device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    for _ in range(settings.epochs):
        order_N = torch.randperm(x_ND.shape[0], generator=generator).to(device)
        for batch_B in order_N.split(settings.batch_size):
            loss = F.cross_entropy(probe(x_ND[batch_B]), labels_N[batch_B])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval()


@dataclass(frozen=True)
class FittedProbe:
    """A trained probe with the standardisation it was trained under; scores any feature set."""

    standardize: Standardizer
    probe: nn.Linear
    device: str = "cpu"

    @classmethod
    def fit(
        cls, train_ND: torch.Tensor, train_labels_N: torch.Tensor, num_classes: int,
        settings: LinearProbeSettings, device: str = "cpu",
    ) -> FittedProbe:
        standardize = Standardizer.fit(train_ND, settings.std_clamp)
        with torch.enable_grad():
            probe = train_linear_probe(standardize(train_ND), train_labels_N, num_classes, settings, device)
        return cls(standardize, probe, device)

    @torch.no_grad()
    def logits(self, features_ND: torch.Tensor) -> torch.Tensor:
        return self.probe(self.standardize(features_ND).to(self.device)).cpu()

    def metrics(self, features_ND: torch.Tensor, labels_N: torch.Tensor) -> dict:
        return classification_metrics(self.logits(features_ND), labels_N)


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
    the linear probe's (absent when it was not asked for).
    """

    name: ClassVar[str] = "linear"

    def __init__(
        self, settings: LinearProbeSettings | None = None, device: str = "cpu",
        probes: tuple[str, ...] = ("linear",), mlp: MLPProbeSettings | None = None,
        attentive: AttentiveProbeSettings | None = None,
    ) -> None:
        super().__init__(device)
        self.probe_settings = settings or LinearProbeSettings()
        self.mlp_settings = mlp or MLPProbeSettings()
        self.attentive_settings = attentive or AttentiveProbeSettings()
        self.probes = check_probe_names(probes)

    def settings(self) -> dict:
        return {
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
            return {**asdict(self.mlp_settings), "feature": "final-norm CLS token",
                    "preprocessing": "L2-normalise, standardise with train mean/std",
                    "classifier": "Linear -> GELU -> Linear", "optimizer": "AdamW",
                    "schedule": "cosine to 0 over all steps", "loss": "cross-entropy"}
        if probe == "attentive":
            return {**asdict(self.attentive_settings), "feature": "final-norm patch tokens",
                    "preprocessing": "standardise per dimension with train-token mean/std",
                    "classifier": "learned query, 1 pre-norm cross-attention block "
                                  "(attention + MLP, residual), LayerNorm, Linear",
                    "optimizer": "AdamW", "schedule": "cosine to 0 over all steps",
                    "loss": "cross-entropy"}
        return {key: value for key, value in self.settings().items() if key != "probes"}

    def run_probe(self, probe: str, encoder: FeatureSource, data: EvalData,
                  train: SplitFeatures, test: SplitFeatures) -> dict:
        """One probe's metrics (train and test features are the CLS ones, labels included)."""
        args = (data.num_classes,)
        if probe == "mlp":
            return mlp_probe_metrics(train.cls_ND, train.labels_N, test.cls_ND, test.labels_N,
                                     *args, self.mlp_settings, self.device)
        if probe == "attentive":
            train_NLD = aligned_tokens(encoder, data.train, train)
            test_NLD = aligned_tokens(encoder, data.test, test)
            return attentive_probe_metrics(train_NLD, train.labels_N, test_NLD, test.labels_N,
                                           *args, self.attentive_settings, self.device)
        return linear_probe_metrics(train.cls_ND, train.labels_N, test.cls_ND, test.labels_N,
                                    *args, self.probe_settings, self.device)

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        train = checked_image_features(encoder, data.train, data.num_classes)
        test = checked_image_features(encoder, data.test, data.num_classes)
        probes = {probe: {**self.run_probe(probe, encoder, data, train, test),
                          "settings": self.probe_settings_of(probe)} for probe in self.probes}
        headline = {k: v for k, v in probes.get("linear", {}).items() if k != "settings"}
        return {
            **headline,
            "probes": probes,
            "settings": self.settings(),
            "data": {
                "train": split_sizes(data.train, train),
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


def aligned_tokens(encoder: FeatureSource, split: EvalSplit, images: SplitFeatures) -> torch.Tensor:
    """The split's patch tokens, which must be the same samples, in order, as its CLS features."""
    tokens_NLD = encoder.patch_features(split).tokens_NLD
    if tokens_NLD.shape[0] != images.num_samples:
        raise EvalError(f"split {split.name}: {tokens_NLD.shape[0]} patch-token rows but "
                        f"{images.num_samples} CLS rows; the split changed during evaluation")
    return tokens_NLD
