"""Image preprocessing recorded in every checkpoint, so each encoder is evaluated under its own
normalisation and resize policy (METHOD.md "Evaluation protocols")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    size: int | None = None,
) -> Callable[[Image.Image], torch.Tensor]:
    """RandomResizedCrop + mild colour jitter (the paper's light augmentation); open_clip's
    default is scale (0.9, 1.0) without jitter. `hue_jitter` > 0 replaces the mild jitter with
    LeVLJEPA+'s (DINO's) strong one on 80 % of images, hue drawn from +-hue_jitter (DINO: 0.1),
    and `grayscale_p` greys that fraction of images: with a large hue range colour stops being a
    cue the views share, so the multi-view term is met by what they do share (on the synthetic
    world, the background's texture: docs/small-scale.md). The trainer asks for uint8
    pixels: a quarter of the bytes through the loader's workers and the host-to-device copy,
    normalised on the device (`normalize`). `size` (default `p.size`): a local view's."""
    crop = T.RandomResizedCrop(size or p.size, scale=scale,
                               interpolation=INTERPOLATIONS[p.interpolation])
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
    their augmentation too; here the first ones may keep the colours the caption names.

    `local_transforms` make LeVLJEPA+'s local views, smaller crops at a smaller size. They
    travel tiled into extra frames of the global size ([V + F, C, H, W], `pack_local_views`),
    so a batch stays one tensor through either loader, the pinned copy and DeepSpeed; the
    trainer cuts them out again (`split_local_views`)."""

    def __init__(self, transforms: list[Callable[[Image.Image], torch.Tensor]],
                 local_transforms: Sequence[Callable[[Image.Image], torch.Tensor]] = ()) -> None:
        self.transforms, self.local_transforms = transforms, list(local_transforms)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        views_VCHW = torch.stack([transform(image) for transform in self.transforms])
        if not self.local_transforms:
            return views_VCHW
        local_LCHW = torch.stack([transform(image) for transform in self.local_transforms])
        return torch.cat([views_VCHW, pack_local_views(local_LCHW, views_VCHW.shape[-1])])


def tiles_per_frame(size: int, local_size: int) -> int:
    """Local views of `local_size` px one frame of `size` px holds: a k x k grid."""
    return (size // local_size) ** 2


def local_frames(local_views: int, size: int, local_size: int) -> int:
    """Frames of `size` px that `local_views` tiled local views take."""
    return -(-local_views // tiles_per_frame(size, local_size))


def pack_local_views(local_LCHW: torch.Tensor, size: int) -> torch.Tensor:
    """[L, C, h, w] local views -> [F, C, size, size] frames, tiled row-major, frame by frame;
    the rest of each frame is zeros."""
    views, channels, local_size = local_LCHW.shape[0], local_LCHW.shape[1], local_LCHW.shape[-1]
    grid = size // local_size
    frames_FCHW = local_LCHW.new_zeros(local_frames(views, size, local_size), channels, size, size)
    for index, view_CHW in enumerate(local_LCHW):
        frame, tile = divmod(index, grid * grid)
        row, col = divmod(tile, grid)
        frames_FCHW[frame, :, row * local_size:(row + 1) * local_size,
                    col * local_size:(col + 1) * local_size] = view_CHW
    return frames_FCHW


def split_local_views(images_BNCHW: torch.Tensor, local_views: int, local_size: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of `Views` output -> (global views [B, V, C, H, W], local views
    [B, L, C, local_size, local_size]): `pack_local_views` undone for every image at once."""
    size = images_BNCHW.shape[-1]
    frames = local_frames(local_views, size, local_size)
    if images_BNCHW.ndim != 5 or images_BNCHW.shape[1] <= frames:
        raise ValueError(f"a batch with {local_views} local views needs [B, V + {frames}, C, H, "
                         f"W] images (Views' output), got {list(images_BNCHW.shape)}")
    grid = size // local_size
    globals_BVCHW, frames_BFCHW = images_BNCHW[:, :-frames], images_BNCHW[:, -frames:]
    cropped = frames_BFCHW[..., :grid * local_size, :grid * local_size]
    # [B, F, C, gh*s, gw*s] -> [B, F, gh, gw, C, s, s] -> [B, F*gh*gw, C, s, s]
    tiles = cropped.unflatten(-2, (grid, local_size)).unflatten(-1, (grid, local_size))
    tiles = tiles.permute(0, 1, 3, 5, 2, 4, 6).flatten(1, 3)
    return globals_BVCHW, tiles[:, :local_views]


def _rgb(image: Image.Image) -> Image.Image:
    """Grey or RGBA inputs would otherwise give 1 or 4 channels and break the 3-channel model."""
    return image if image.mode == "RGB" else image.convert("RGB")
