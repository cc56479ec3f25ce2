"""Frozen feature extraction: one pass over a split, and text embeddings.

The model runs in eval mode under no_grad (BatchNorm uses its running statistics, so a batch of
one is fine and features do not depend on batch composition). Images go through the transform
the caller passes (the checkpoint's own eval preprocessing, or it under a protocol's geometry,
levl_eval.geometry); samples are read once each, in stored order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import torch

from levl_eval.data.batches import split_batches
from levl_eval.data.splits import EvalSplit
from levl_eval.errors import EvalDataError
from levl_eval.features.spill import ArrayWriter, RaggedMaps, RaggedWriter, SpillDir
from levl_eval.features.types import ClassTextFeatures, PatchFeatures, SplitFeatures, TextFeatures
from levl_eval.progress import progress_bar

# Patch tokens are cached in half precision: ADE20K's 20k training images at ViT-B are 12 GB
# in float32, 6 GB in float16; a linear head cannot tell the difference.
PATCH_CACHE_DTYPE = torch.float16


def batch_images(batch: dict) -> int:
    """Images the batch went through: those read and those skipped."""
    return len(batch["labels"]) + sum(batch.get("skipped", {}).values())


def progress(split: EvalSplit, batches: Iterator[dict], desc: str) -> Iterator[dict]:
    """The batches, under a bar counting the split's images (its rate in img/s; silent when
    stderr is not a terminal)."""
    count = split.manifest.num_samples if split.manifest is not None else len(split.files)
    with progress_bar(total=count or None, desc=desc or split.name, unit="img") as bar:
        for batch in batches:
            yield batch
            bar.update(batch_images(batch))


def readable_batches(split: EvalSplit, batches: Iterator[dict], skipped: Counter) -> Iterator[dict]:
    """The non-empty batches, tallying skipped samples on the way."""
    for batch in batches:
        skipped.update(batch.get("skipped", {}))
        if len(batch["labels"]):
            yield batch


def no_sample_error(split: EvalSplit, skipped: Counter) -> EvalDataError:
    return EvalDataError(f"split {split.name}: no sample could be read (skipped: {dict(skipped)})")


class ImageFeatureWriters:
    """CLS, z_v and pred_v(z_v) rows onto disk as they come (`levl_eval.features.spill`):
    ImageNet's 1.28M train images give 3.9 GB of float32 per 768-wide array, which a list of
    batches to concatenate would hold twice over."""

    def __init__(self, spill: SpillDir, predictors: bool) -> None:
        self.cls = ArrayWriter(spill.file("cls_ND"), torch.float32)
        self.z = ArrayWriter(spill.file("z_NE"), torch.float32)
        self.pred = ArrayWriter(spill.file("pred_NE"), torch.float32) if predictors else None

    def append(self, model: torch.nn.Module, image) -> None:
        """One batch's rows from `image`, what `model.encode_image` returned for it."""
        self.cls.append(image.cls_BD)
        self.z.append(image.z_BE)
        if self.pred is not None:
            self.pred.append(model.vision_pred(image.z_BE))

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(cls_ND, z_NE, pred_NE or None), mapped."""
        return self.cls.finish(), self.z.finish(), self.pred.finish() if self.pred is not None else None


@torch.no_grad()
def extract_split_features(
    model: torch.nn.Module, split: EvalSplit, transform: Callable, *,
    spill: SpillDir, batch_size: int, device: str, num_workers: int = 0, desc: str = "",
) -> SplitFeatures:
    """CLS feature, z_v and pred_v(z_v) (when the model has predictors) of every image in the
    split (float32), with its labels and captions. The three arrays are written to `spill` batch
    by batch and come back mapped, so memory holds one batch whatever the split's size; labels
    and captions (a few bytes per image) stay in memory."""
    model.eval()
    batches = split_batches(split, transform, batch_size=batch_size, num_workers=num_workers)
    writers = ImageFeatureWriters(spill, model.has_predictors)
    labels: list[torch.Tensor] = []
    captions: list = []
    skipped: Counter[str] = Counter()
    for batch in readable_batches(split, progress(split, batches, desc), skipped):
        writers.append(model, model.encode_image(batch["image"].to(device, non_blocking=True)))
        labels.append(batch["labels"])
        captions += batch["captions"]
    if not labels:
        raise no_sample_error(split, skipped)
    cls_ND, z_NE, pred_NE = writers.finish()
    return SplitFeatures(
        cls_ND=cls_ND, z_NE=z_NE, pred_NE=pred_NE, labels_N=torch.cat(labels),
        skipped={reason: int(count) for reason, count in skipped.items() if count},
        captions=tuple(captions),
    )


def patch_grid(model: torch.nn.Module, images_BCHW: torch.Tensor, num_tokens: int) -> tuple[int, int]:
    """(h, w) of the patch-token grid for this input size; checked against the token count."""
    patch = model.config.vision.patch_size
    grid_hw = (images_BCHW.shape[-2] // patch, images_BCHW.shape[-1] // patch)
    if grid_hw[0] * grid_hw[1] != num_tokens:
        raise EvalDataError(f"{num_tokens} patch tokens do not form the {grid_hw} grid of a "
                            f"{tuple(images_BCHW.shape[-2:])} input with patch {patch}")
    return grid_hw


def split_has_masks(split: EvalSplit) -> bool:
    """Whether the split names per-pixel labels (a mask member, or mask files)."""
    return split.mask_member is not None or any(sample.mask is not None for sample in split.files)


def batch_masks(split: EvalSplit, batch: dict, masks: Callable | None) -> torch.Tensor | list[torch.Tensor]:
    """The batch's label maps ([B, H, W], or a list when their sizes differ); [B, 0, 0] when the
    split is read without masks (vlm, not seg)."""
    if masks is None:
        return torch.zeros(len(batch["labels"]), 0, 0, dtype=torch.uint8)
    if batch["masks"] is None:
        raise EvalDataError(f"split {split.name}: has no per-pixel labels to segment")
    return batch["masks"]


def no_maps(maps: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """[B, 0, 0] of the maps' dtype: the masks_NHW of a split whose maps are kept as frames."""
    return torch.zeros(len(maps), 0, 0, dtype=maps[0].dtype)


class MapsWriter:
    """A split's per-pixel maps as they come, onto disk: [N, H, W] through the input geometry
    (training targets), or one frame per image at its original size (`frame_maps`)."""

    def __init__(self, split: EvalSplit, spill: SpillDir, masks: Callable | None, frame_maps: bool) -> None:
        self.split, self.masks = split, masks
        self.grid = ArrayWriter(spill.file("masks_NHW"))  # uint8 labels, or float32 metres
        self.frames = RaggedWriter(spill.file("frame_maps")) if frame_maps else None

    def append(self, batch: dict) -> None:
        maps = batch_masks(self.split, batch, self.masks)
        if self.frames is not None:
            self.frames.append(maps)
            maps = no_maps(maps)
        self.grid.append(maps if isinstance(maps, torch.Tensor) else torch.stack(maps))

    def finish(self) -> tuple[torch.Tensor, tuple | RaggedMaps]:
        return self.grid.finish(empty_row_shape=(0, 0)), self.frames.finish() if self.frames else ()


@torch.no_grad()
def extract_patch_features(
    model: torch.nn.Module, split: EvalSplit, transform: Callable, masks: Callable | None, *,
    spill: SpillDir, batch_size: int, device: str, num_workers: int = 0, desc: str = "",
    frame_maps: bool = False,
) -> PatchFeatures:
    """Final-norm patch tokens (float16), label maps (uint8; none when `masks` is None) and
    question/answer dicts of every image in the split. Tokens and maps are written to `spill`
    batch by batch and come back mapped (`levl_eval.features.spill`): memory holds one batch,
    whatever the split's size. With `frame_maps` the maps (read at their original resolution by
    `masks`) are kept one per image, as `PatchFeatures.frame_maps`."""
    model.eval()
    batches = split_batches(split, transform, masks, batch_size=batch_size, num_workers=num_workers)
    tokens = ArrayWriter(spill.file("tokens_NLD"), PATCH_CACHE_DTYPE)
    maps, qa, grid_hw = MapsWriter(split, spill, masks, frame_maps), [], (0, 0)
    skipped: Counter[str] = Counter()
    for batch in readable_batches(split, progress(split, batches, desc), skipped):
        maps.append(batch)
        patches_BLD = model.encode_image(batch["image"].to(device, non_blocking=True)).patches_BLD
        grid_hw = patch_grid(model, batch["image"], patches_BLD.shape[1])
        tokens.append(patches_BLD)
        qa += batch.get("qa", [()] * len(batch["labels"]))
    if not tokens.rows:
        raise no_sample_error(split, skipped)
    masks_NHW, frames = maps.finish()
    return PatchFeatures(
        tokens_NLD=tokens.finish(), grid_hw=grid_hw, masks_NHW=masks_NHW,
        skipped={reason: int(count) for reason, count in skipped.items() if count}, qa=tuple(qa),
        frame_maps=frames,
    )


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module, tokenizer: Callable, texts: tuple[str, ...], *, batch_size: int,
    device: str,
) -> TextFeatures:
    """z_t and pred_t(z_t) of every text, in order, shaped [M, E] (not normalised)."""
    model.eval()
    z_parts, pred_parts = [], []
    for start in range(0, len(texts), batch_size):
        input_ids_BL, attention_mask_BL = tokenizer(list(texts[start:start + batch_size]))
        z_BE = model.encode_text(input_ids_BL.to(device), attention_mask_BL.to(device)).z_BE
        z_parts.append(z_BE.float().cpu())
        if model.has_predictors:
            pred_parts.append(model.text_pred(z_BE).float().cpu())
    return TextFeatures(z_ME=torch.cat(z_parts),
                        pred_ME=torch.cat(pred_parts) if pred_parts else None)


def class_prompt_texts(classes: tuple[str, ...], prompts: tuple[str, ...]) -> list[str]:
    """Every prompt filled with every class, class-major (row c*P + p)."""
    return [prompt.format(name) for name in classes for prompt in prompts]


def encode_class_texts(
    model: torch.nn.Module, tokenizer: Callable, classes: tuple[str, ...],
    prompts: tuple[str, ...], *, batch_size: int, device: str,
) -> ClassTextFeatures:
    """z_t and pred_t(z_t) of every (class, prompt) text, shaped [C, P, E] (not normalised)."""
    texts = tuple(class_prompt_texts(classes, prompts))
    encoded = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device)
    shape = (len(classes), len(prompts), -1)
    pred = encoded.pred_ME
    return ClassTextFeatures(z_CPE=encoded.z_ME.reshape(shape),
                             pred_CPE=None if pred is None else pred.reshape(shape))
