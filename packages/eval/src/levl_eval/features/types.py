"""The frozen features a protocol consumes.

Protocols see features only through `FeatureSource`, so the protocol math runs the same on a
real encoder (`levl_eval.encoder.FrozenEncoder`, which extracts once and memoises) and on
hand-made tensors in tests (`levl_eval.testing.worlds.StaticFeatures`). The splits they are
computed from are described in `levl_eval.data.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from levl_eval.data.splits import EvalSplit
from levl_eval.geometry import ImageGeometry


@dataclass(frozen=True)
class SplitFeatures:
    """Per-image frozen features of one split, on the CPU, float32, in manifest order.

    Extracted cls_ND, z_NE and pred_NE are files mapped into memory (`levl_eval.features.spill`;
    ImageNet's train split is 3.9 GB per array at width 768): index them a batch at a time where
    a protocol can; labels and captions are in memory."""

    cls_ND: torch.Tensor
    z_NE: torch.Tensor
    pred_NE: torch.Tensor | None  # None: the encoder has no trained predictor
    labels_N: torch.Tensor
    skipped: dict[str, int] = field(default_factory=dict)
    captions: tuple[tuple[str, ...], ...] = ()  # per image; -1 labels mark unlabelled data

    @property
    def num_samples(self) -> int:
        return int(self.labels_N.shape[0])


@dataclass(frozen=True)
class PatchFeatures:
    """Per-image patch tokens on the (h, w) grid, row-major, with the per-pixel labels.

    masks_NHW are the maps through the encoder input's geometry, at its resolution (training
    targets), uint8 with 255 = void (float32 metres with 0 = invalid for a depth split); a split
    without them gives an [N, 0, 0] tensor. `frame_maps` are each image's map untouched, at its
    original resolution (sizes may differ), read only for a split that is scored
    (`FeatureSource.patch_features(..., frame_maps=True)`). `qa` holds each image's
    question/answer dicts. Extracted tokens and maps are files mapped into memory
    (`levl_eval.features.spill`): index them a batch at a time, never whole.
    """

    tokens_NLD: torch.Tensor
    grid_hw: tuple[int, int]
    masks_NHW: torch.Tensor
    skipped: dict[str, int] = field(default_factory=dict)
    qa: tuple[tuple[dict, ...], ...] = ()
    frame_maps: Sequence[torch.Tensor] = ()  # a tuple, or spill.RaggedMaps when extracted

    @property
    def num_samples(self) -> int:
        return int(self.tokens_NLD.shape[0])

    def scored_maps(self) -> Sequence[torch.Tensor]:
        """The [H_i, W_i] map each image is scored against: its original frame when read, else
        a row of masks_NHW (in-memory data, given at the resolution it is to be scored at)."""
        return self.frame_maps or self.masks_NHW.unbind(0)

    def sizes(self) -> dict:
        """What a dense protocol's report records about the split it trained or tested on: the
        label size [H, W], or when the frames differ their per-axis range and how many sizes."""
        label_sizes = {tuple(label.shape) for label in self.scored_maps()}
        heights, widths = ([size[axis] for size in label_sizes] for axis in (0, 1))
        label_size = list(label_sizes.pop()) if len(label_sizes) == 1 else {
            "min": [min(heights), min(widths)], "max": [max(heights), max(widths)],
            "distinct": len(label_sizes)}
        return {"samples": self.num_samples, "skipped": dict(self.skipped),
                "grid": list(self.grid_hw), "label_size": label_size}


@dataclass(frozen=True)
class TextFeatures:
    """z_t and pred_t(z_t) of a list of texts, in order (not normalised); no pred_t for an
    encoder without trained predictors."""

    z_ME: torch.Tensor
    pred_ME: torch.Tensor | None


@dataclass(frozen=True)
class ClassTextFeatures:
    """Text embeddings of every (class, prompt) pair, before any normalisation or averaging."""

    z_CPE: torch.Tensor
    pred_CPE: torch.Tensor | None


class FeatureSource(Protocol):
    """What a protocol needs from an encoder: frozen image, patch and text features.

    `geometry` is the resize and crop the images go through (`levl_eval.geometry`); None means
    the checkpoint's own eval preprocessing. `frame_maps` asks for the split's per-pixel maps at
    their original resolution (`PatchFeatures.frame_maps`) instead of through the geometry.
    """

    name: str

    def image_features(
        self, split: EvalSplit, geometry: ImageGeometry | None = None
    ) -> SplitFeatures: ...

    def patch_features(
        self, split: EvalSplit, geometry: ImageGeometry | None = None, *, frame_maps: bool = False
    ) -> PatchFeatures: ...

    def text_features(self, texts: tuple[str, ...]) -> TextFeatures: ...

    def class_text_features(
        self, classes: tuple[str, ...], prompts: tuple[str, ...]
    ) -> ClassTextFeatures: ...
