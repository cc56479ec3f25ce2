"""Linear probe on the frozen CLS feature (METHOD.md, "Evaluation protocols").

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

from levl_eval.featureset import EvalData, FeatureSource
from levl_eval.metrics import classification_metrics
from levl_eval.protocols.base import EvalProtocol, checked_image_features, split_sizes


@dataclass(frozen=True)
class LinearProbeSettings:
    """The paper's probe settings; every field lands in the report."""

    lr: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 4096
    epochs: int = 50
    seed: int = 0
    std_clamp: float = 1e-8


@dataclass(frozen=True)
class Standardizer:
    """L2-normalise then standardise with statistics fitted on the train features only."""

    mean_D: torch.Tensor
    std_D: torch.Tensor

    @classmethod
    def fit(cls, train_ND: torch.Tensor, std_clamp: float) -> Standardizer:
        unit_ND = F.normalize(train_ND.float(), dim=-1)
        return cls(unit_ND.mean(dim=0), unit_ND.std(dim=0, correction=0).clamp_min(std_clamp))

    def __call__(self, features_ND: torch.Tensor) -> torch.Tensor:
        return (F.normalize(features_ND.float(), dim=-1) - self.mean_D) / self.std_D


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
    """Linear probe trained on eval-train CLS features, scored on eval-test."""

    name: ClassVar[str] = "linear"

    def __init__(self, settings: LinearProbeSettings | None = None, device: str = "cpu") -> None:
        super().__init__(device)
        self.probe_settings = settings or LinearProbeSettings()

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
        }

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        train = checked_image_features(encoder, data.train, data.num_classes)
        test = checked_image_features(encoder, data.test, data.num_classes)
        metrics = linear_probe_metrics(
            train.cls_ND, train.labels_N, test.cls_ND, test.labels_N,
            data.num_classes, self.probe_settings, self.device,
        )
        return {
            **metrics,
            "settings": self.settings(),
            "data": {
                "train": split_sizes(data.train, train),
                "test": split_sizes(data.test, test),
                "num_classes": data.num_classes,
            },
        }
