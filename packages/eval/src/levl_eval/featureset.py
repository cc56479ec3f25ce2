"""The frozen features a protocol consumes, and the data description they come from.

Protocols see features only through `FeatureSource`, so the protocol math runs the same on a
real encoder (`levl_eval.encoder.FrozenEncoder`, which extracts once and memoises) and on
hand-made tensors in tests (`levl_eval.testing.StaticFeatures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation split; `manifest` is a levl_data Manifest, or None for in-memory data."""

    name: str
    manifest: Any = None

    def describe(self) -> dict:
        """The split's identity for a report: where it came from and which version it is."""
        if self.manifest is None:
            return {"name": self.name}
        return {
            "name": self.name,
            "manifest": str(self.manifest.path),
            "dataset": self.manifest.name,
            "fingerprint": self.manifest.fingerprint,
            "num_samples": self.manifest.num_samples,
        }


@dataclass(frozen=True)
class EvalData:
    """A labelled classification task: a train split (for probes), a test split, class names and
    the prompt templates zero-shot turns them into texts with."""

    train: EvalSplit
    test: EvalSplit
    classes: tuple[str, ...]
    prompts: tuple[str, ...] = ("a photo of a {}.",)
    root: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {
            "root": None if self.root is None else str(self.root),
            "train": self.train.describe(),
            "test": self.test.describe(),
            "classes": list(self.classes),
            "prompts": list(self.prompts),
        }


@dataclass(frozen=True)
class SplitFeatures:
    """Per-image frozen features of one split, on the CPU, float32, in manifest order."""

    cls_ND: torch.Tensor
    z_NE: torch.Tensor
    pred_NE: torch.Tensor
    labels_N: torch.Tensor
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.labels_N.shape[0])


@dataclass(frozen=True)
class ClassTextFeatures:
    """Text embeddings of every (class, prompt) pair, before any normalisation or averaging."""

    z_CPE: torch.Tensor
    pred_CPE: torch.Tensor


class FeatureSource(Protocol):
    """What a protocol needs from an encoder: frozen image features and class-text features."""

    name: str

    def image_features(self, split: EvalSplit) -> SplitFeatures: ...

    def class_text_features(
        self, classes: tuple[str, ...], prompts: tuple[str, ...]
    ) -> ClassTextFeatures: ...
