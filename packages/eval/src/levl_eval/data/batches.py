"""Batches of one evaluation split, the same shape whether it is a shard manifest or files.

Every batch is `{"image": [B,3,H,W], "labels": [B], "masks": [B,H,W] uint8 (float32 metres for
a depth split), a list of B [H_i, W_i] maps when their sizes differ, or None,
"captions": [tuple[str, ...]] * B, "qa": [tuple[dict, ...]] * B, "skipped": {reason: count}}`, in the split's stored order. A
sample that cannot be decoded is skipped and counted (as the shard loader does), never a crash.
Masks go through the image's geometry (resize shorter side and centre crop, or the full-frame
resize) with nearest interpolation, so label pixel (y, x) sits under image pixel (y, x); or,
read for scoring (`frame_target_transform`), they stay untouched at their original resolution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from levl_data.loader import batch_name, build_loader
from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.errors import EvalDataError
from levl_eval.geometry import frame_resize
from levl_eval.protocols.depth.maps import depth_transform
from levl_model.preprocess import Preprocess

VOID = 255
PixelGeometry = Callable[[PIL.Image.Image], PIL.Image.Image]


def nearest_geometry(preprocess: Preprocess, full_frame: bool = False) -> PixelGeometry:
    """The encoder input's geometry (resize shorter side and centre crop, or the whole frame
    resized, `levl_eval.geometry.FULL_FRAME`) with nearest interpolation: no blended class ids."""
    nearest = T.InterpolationMode.NEAREST
    if full_frame:
        return frame_resize(preprocess, nearest)
    return T.Compose([T.Resize(preprocess.resize_shorter or preprocess.size, interpolation=nearest),
                      T.CenterCrop(preprocess.size)])


def untouched(image: PIL.Image.Image) -> PIL.Image.Image:
    """No geometry: the map at its original resolution, the frame a dense protocol scores on."""
    return image


def label_map_transform(geometry: PixelGeometry) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL label map -> uint8 [H, W] through `geometry` (nearest, or none)."""

    def transform(mask: PIL.Image.Image) -> torch.Tensor:
        values = np.asarray(geometry(mask))
        if values.ndim != 2 or values.max(initial=0) > VOID:
            raise ValueError("not a single-channel 8-bit label map")
        return torch.from_numpy(values.astype(np.uint8))

    return transform


def mask_transform(preprocess: Preprocess) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL label map -> uint8 [H, W] through the eval crop's geometry (nearest, no blending)."""
    return label_map_transform(nearest_geometry(preprocess))


def maps_transform(split: EvalSplit, geometry: PixelGeometry) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """The reader of the split's per-pixel maps: class labels, or depth (levl_eval.protocols.depth.maps)."""
    if split.mask_kind == "labels":
        return label_map_transform(geometry)
    if split.mask_kind in ("depth_mm", "depth_mm_eigen"):
        return depth_transform(geometry, eigen_crop=split.mask_kind == "depth_mm_eigen")
    raise EvalDataError(f"split {split.name}: unknown mask_kind {split.mask_kind!r}")


def target_transform(
    split: EvalSplit, preprocess: Preprocess, full_frame: bool = False
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """The split's maps under the encoder input's geometry: pixel for pixel under the image
    the encoder sees (training targets)."""
    return maps_transform(split, nearest_geometry(preprocess, full_frame))


def frame_target_transform(split: EvalSplit) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """The split's maps untouched, at each label's original resolution (what is scored)."""
    return maps_transform(split, untouched)


def remap_labels(mask_HW: torch.Tensor, split: EvalSplit) -> torch.Tensor:
    """The split's stored label ids -> class ids (reduce_zero_label, then its label_map)."""
    if split.reduce_zero_label:
        mask_HW = reduce_zero_label(mask_HW)
    if split.label_map is not None:
        mask_HW = torch.tensor(split.label_map, dtype=torch.uint8)[mask_HW.long()]
    return mask_HW


def reduce_zero_label(mask_HW: torch.Tensor) -> torch.Tensor:
    """ADE20K's convention: 0 is 'other' (void) -> 255, class k -> k - 1."""
    return torch.where(mask_HW == 0, VOID, mask_HW.long() - 1).to(torch.uint8)


def manifest_labels(meta: list[dict], split: EvalSplit) -> torch.Tensor:
    """The per-sample json `label` ints of a batch; a sample without one is a bad eval split."""
    try:
        return torch.tensor([int(sample["label"]) for sample in meta], dtype=torch.long)
    except (KeyError, TypeError, ValueError):
        where = split.manifest.path if split.manifest is not None else split.name
        raise EvalDataError(
            f"manifest {where}: a sample's json has no integer `label`; "
            "eval splits need per-sample labels (regenerate with `levl-data synth`)"
        ) from None


def manifest_batches(
    split: EvalSplit, transform: Callable, masks: Callable | None, *, batch_size: int,
    num_workers: int,
) -> Iterator[dict]:
    """Batches of a shard split; `image_member` (e.g. mixed_rand.jpg) replaces the image."""
    extra = [m for m in (split.image_member, split.mask_member if masks else None) if m]
    loader = build_loader(
        split.manifest, batch_size=batch_size, image_transform=transform, shuffle_buffer=0,
        num_workers=num_workers, resample=False, drop_last=False, extra_members=extra,
        extra_transforms={split.mask_member: masks} if masks and split.mask_member else None,
    )
    for batch in loader:
        if len(batch["meta"]) == 0:
            yield {"skipped": batch.get("skipped", {}), "labels": torch.zeros(0, dtype=torch.long)}
            continue
        mask_BHW = batch[batch_name(split.mask_member)] if masks and split.mask_member else None
        if mask_BHW is not None and split.reduce_zero_label:
            mask_BHW = reduce_zero_label(mask_BHW)
        yield {
            "image": batch[batch_name(split.image_member)] if split.image_member else batch["image"],
            "labels": manifest_labels(batch["meta"], split),
            "masks": mask_BHW,
            "captions": [(caption,) for caption in batch["caption"]],
            "qa": [tuple(sample.get("qa") or ()) for sample in batch["meta"]],
            "skipped": batch.get("skipped", {}),
        }


class FileSamples(Dataset):
    """A folder split's samples, decoded with PIL; an unreadable one comes back as a reason."""

    def __init__(self, split: EvalSplit, transform: Callable, masks: Callable | None) -> None:
        self.split, self.transform, self.masks = split, transform, masks

    def __len__(self) -> int:
        return len(self.split.files)

    def __getitem__(self, index: int) -> dict | str:
        sample: FileSample = self.split.files[index]
        image = open_image(sample.image, "RGB")
        if image is None:
            return "undecodable_image"
        item = {"image": self.transform(image), "label": sample.label, "captions": sample.captions,
                "qa": sample.qa}
        if self.masks is not None:
            try:
                mask_HW = self.masks(open_image(sample.mask, None))
            except (ValueError, TypeError):
                return "undecodable_mask"
            item["mask"] = remap_labels(mask_HW, self.split)
        return item


def open_image(path, mode: str | None) -> PIL.Image.Image | None:
    """The decoded image (converted to `mode` unless None), or None when it cannot be read."""
    try:
        with PIL.Image.open(path) as opened:
            opened.load()
            return opened.convert(mode) if mode else opened.copy()
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return None


def collate_files(items: list[dict | str]) -> dict:
    """Stack the good samples; count the others by reason."""
    good = [item for item in items if isinstance(item, dict)]
    skipped = Counter(item for item in items if isinstance(item, str))
    if not good:
        return {"skipped": dict(skipped), "labels": torch.zeros(0, dtype=torch.long)}
    return {
        "image": torch.stack([item["image"] for item in good]),
        "labels": torch.tensor([item["label"] for item in good], dtype=torch.long),
        "masks": stacked_maps([item["mask"] for item in good]) if "mask" in good[0] else None,
        "captions": [item["captions"] for item in good],
        "qa": [item["qa"] for item in good],
        "skipped": dict(skipped),
    }


def stacked_maps(maps: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """[B, H, W] when every map has one size; the list itself when sizes differ (maps read at
    their original resolution), which padding would fill with pixels that do not exist."""
    if len({tuple(item.shape) for item in maps}) == 1:
        return torch.stack(maps)
    return maps


def split_batches(
    split: EvalSplit, transform: Callable, masks: Callable | None = None, *, batch_size: int,
    num_workers: int = 0,
) -> Iterator[dict]:
    """Batches of the split in stored order; pass `masks` to read its per-pixel labels too."""
    if split.files:
        loader = DataLoader(FileSamples(split, transform, masks), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=collate_files)
        yield from loader
    elif split.manifest is not None:
        yield from manifest_batches(split, transform, masks, batch_size=batch_size,
                                    num_workers=num_workers)
    else:
        raise EvalDataError(f"split {split.name}: neither a manifest nor files to read")
