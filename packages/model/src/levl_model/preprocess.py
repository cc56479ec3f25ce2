"""Image preprocessing recorded in every checkpoint, so each encoder is evaluated under its own
normalisation and resize policy (METHOD.md "Evaluation protocols")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from levl_model.config import check_choice, check_float, check_int, dataclass_from_dict, fail

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def _check_triple(key: str, value: Any, lo: float) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        fail("preprocess", key, f"expected 3 numbers (one per RGB channel), got {value!r}")
    for item in value:
        check_float("preprocess", key, item, lo, 10.0)
    return tuple(float(v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocess:
    """size = the square crop fed to the model; resize_shorter = the shorter side before the
    centre crop at eval time (None means `size`, i.e. no extra margin)."""

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize_shorter: int | None = None

    def __post_init__(self) -> None:
        check_int("preprocess", "size", self.size)
        object.__setattr__(self, "mean", _check_triple("mean", self.mean, -10.0))
        object.__setattr__(self, "std", _check_triple("std", self.std, 1e-8))
        check_choice("preprocess", "interpolation", self.interpolation, tuple(INTERPOLATIONS))
        if self.resize_shorter is not None:
            check_int("preprocess", "resize_shorter", self.resize_shorter, minimum=self.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-native (lists, not tuples) so a metadata round trip compares equal."""
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_shorter": self.resize_shorter,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        return dataclass_from_dict(cls, data, "preprocess")


def _to_tensor(p: Preprocess, uint8: bool) -> list[Callable]:
    """uint8 CHW pixels (for `normalize` on the device), or float pixels normalised here."""
    if uint8:
        return [T.PILToTensor()]
    return [T.ToTensor(), T.Normalize(p.mean, p.std)]


def pixel_stats(p: Preprocess, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as [3, 1, 1] float32 tensors on `device`, for `normalize`."""
    return tuple(torch.tensor(values, dtype=torch.float32).view(-1, 1, 1).to(device)
                 for values in (p.mean, p.std))  # type: ignore[return-value]


def normalize(images_BCHW: torch.Tensor, p: Preprocess,
              stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 pixels → float32 normalised, on the images' device: ToTensor + Normalize's own
    operations in their order (bitwise the same values as `uint8=False`). `stats` are
    `pixel_stats` already on that device (a trainer makes them once)."""
    mean, std = stats or pixel_stats(p, images_BCHW.device)
    return images_BCHW.to(torch.float32).div(255).sub(mean).div(std)


def eval_transform(p: Preprocess, *, uint8: bool = False) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side, centre crop, normalise: deterministic, aspect-preserving."""
    resize = T.Resize(p.resize_shorter or p.size, interpolation=INTERPOLATIONS[p.interpolation])
    return T.Compose([T.Lambda(_rgb), resize, T.CenterCrop(p.size), *_to_tensor(p, uint8)])


def train_transform(
    p: Preprocess, scale: tuple[float, float] = (0.8, 1.0), color_jitter: bool = True, *,
    grayscale_p: float = 0.0, hue_jitter: float = 0.0, uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """RandomResizedCrop + mild colour jitter (the paper's light augmentation); open_clip's
    default is scale (0.9, 1.0) without jitter. `hue_jitter` > 0 replaces the mild jitter with
    LeVLJEPA+'s (DINO's) strong one on 80 % of images, hue drawn from +-hue_jitter, and
    `grayscale_p` greys that fraction of images: colour then stops being a reliable cue, so the
    multi-view term can only be met by what the views share (shape). The trainer asks for uint8
    pixels: a quarter of the bytes through the loader's workers and the host-to-device copy,
    normalised on the device (`normalize`)."""
    crop = T.RandomResizedCrop(p.size, scale=scale, interpolation=INTERPOLATIONS[p.interpolation])
    if hue_jitter > 0:
        jitter = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, hue_jitter)], p=0.8)]
    elif color_jitter:
        jitter = [T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)]
    else:
        jitter = []
    grey = [T.RandomGrayscale(grayscale_p)] if grayscale_p > 0 else []
    return T.Compose([T.Lambda(_rgb), crop, *jitter, *grey, *_to_tensor(p, uint8)])


class Views:
    """One independent draw of each transform, stacked [V, C, H, W]: LeVLJEPA+'s global views of
    one image (METHOD.md), which the multi-view term pulls together. DINO's views differ in
    their augmentation too; here the first ones may keep the colours the caption names."""

    def __init__(self, transforms: list[Callable[[Image.Image], torch.Tensor]]) -> None:
        self.transforms = transforms

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.stack([transform(image) for transform in self.transforms])


def _rgb(image: Image.Image) -> Image.Image:
    """Grey or RGBA inputs would otherwise give 1 or 4 channels and break the 3-channel model."""
    return image if image.mode == "RGB" else image.convert("RGB")
