"""Frozen feature extraction: one pass over a split, and the class-prompt text embeddings.

The model runs in eval mode under no_grad (BatchNorm uses its running statistics, so a batch of
one is fine and features do not depend on batch composition). Images go through the
checkpoint's own eval preprocessing; samples are read once each, in manifest order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import torch
from tqdm import tqdm

from levl_data.loader import build_loader
from levl_eval.errors import EvalDataError
from levl_eval.featureset import ClassTextFeatures, EvalSplit, SplitFeatures


def batch_labels(meta: list[dict], split: EvalSplit) -> torch.Tensor:
    """The per-sample json `label` ints of a batch; a sample without one is a bad eval split."""
    try:
        return torch.tensor([int(sample["label"]) for sample in meta], dtype=torch.long)
    except (KeyError, TypeError, ValueError):
        where = split.manifest.path if split.manifest is not None else split.name
        raise EvalDataError(
            f"manifest {where}: a sample's json has no integer `label`; "
            "eval splits need per-sample labels (regenerate with `levl-data synth`)"
        ) from None


@torch.no_grad()
def extract_split_features(
    model: torch.nn.Module, split: EvalSplit, transform: Callable, *,
    batch_size: int, device: str, num_workers: int = 0, desc: str = "",
) -> SplitFeatures:
    """CLS feature, z_v and pred_v(z_v) of every image in the split (CPU float32)."""
    model.eval()
    loader = build_loader(
        split.manifest, batch_size=batch_size, image_transform=transform, shuffle_buffer=0,
        num_workers=num_workers, resample=False, drop_last=False,
    )
    parts: dict[str, list[torch.Tensor]] = {"cls": [], "z": [], "pred": [], "labels": []}
    skipped: Counter[str] = Counter()
    total = math.ceil(split.manifest.num_samples / batch_size)
    for batch in tqdm(loader, total=total, desc=desc or split.name, unit="batch", disable=None):
        skipped.update(batch.get("skipped", {}))
        if len(batch["meta"]) == 0:
            continue
        image = model.encode_image(batch["image"].to(device, non_blocking=True))
        parts["cls"].append(image.cls_BD.float().cpu())
        parts["z"].append(image.z_BE.float().cpu())
        parts["pred"].append(model.vision_pred(image.z_BE).float().cpu())
        parts["labels"].append(batch_labels(batch["meta"], split))
    if not parts["labels"]:
        raise EvalDataError(f"split {split.name}: no sample could be read (skipped: {dict(skipped)})")
    return SplitFeatures(
        cls_ND=torch.cat(parts["cls"]), z_NE=torch.cat(parts["z"]),
        pred_NE=torch.cat(parts["pred"]), labels_N=torch.cat(parts["labels"]),
        skipped={reason: int(count) for reason, count in skipped.items() if count},
    )


def class_prompt_texts(classes: tuple[str, ...], prompts: tuple[str, ...]) -> list[str]:
    """Every prompt filled with every class, class-major (row c*P + p)."""
    return [prompt.format(name) for name in classes for prompt in prompts]


@torch.no_grad()
def encode_class_texts(
    model: torch.nn.Module, tokenizer: Callable, classes: tuple[str, ...],
    prompts: tuple[str, ...], *, batch_size: int, device: str,
) -> ClassTextFeatures:
    """z_t and pred_t(z_t) of every (class, prompt) text, shaped [C, P, E] (not normalised)."""
    model.eval()
    texts = class_prompt_texts(classes, prompts)
    z_parts, pred_parts = [], []
    for start in range(0, len(texts), batch_size):
        input_ids_BL, attention_mask_BL = tokenizer(texts[start:start + batch_size])
        z_BE = model.encode_text(input_ids_BL.to(device), attention_mask_BL.to(device)).z_BE
        z_parts.append(z_BE.float().cpu())
        pred_parts.append(model.text_pred(z_BE).float().cpu())
    shape = (len(classes), len(prompts), -1)
    return ClassTextFeatures(
        z_CPE=torch.cat(z_parts).reshape(shape), pred_CPE=torch.cat(pred_parts).reshape(shape)
    )
