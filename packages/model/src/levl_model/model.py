"""LevlModel: two encoders, one projection and one predictor per modality."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from levl_model.config import ModelConfig, init_std
from levl_model.encoders import TextEncoder, VisionEncoder
from levl_model.heads import Predictor, build_projection


class ImageFeatures(NamedTuple):
    cls_BD: torch.Tensor
    patches_BLD: torch.Tensor
    z_BE: torch.Tensor


class TextFeatures(NamedTuple):
    eos_BD: torch.Tensor
    z_BE: torch.Tensor


class LevlModel(nn.Module):
    """Submodule names are part of the checkpoint contract (`vision.`, `text.`, ... prefixes)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        heads = cfg.heads
        self.vision = VisionEncoder(cfg.vision, init_std(cfg.init, cfg.vision.width))
        self.text = TextEncoder(cfg.text, init_std(cfg.init, cfg.text.width))
        if cfg.init == "open_clip":
            self.vision.open_clip_init()
            self.text.open_clip_init()
        self.vision_proj = build_projection(heads.projection, cfg.vision.width, heads.proj_hidden,
                                            heads.embed_dim)
        self.text_proj = build_projection(heads.projection, cfg.text.width, heads.proj_hidden,
                                          heads.embed_dim)
        self.vision_pred, self.text_pred = (
            (Predictor(heads.embed_dim, heads.pred_hidden, heads.pred_depth),
             Predictor(heads.embed_dim, heads.pred_hidden, heads.pred_depth))
            if heads.predictors else (None, None))

    @property
    def has_predictors(self) -> bool:
        return self.vision_pred is not None

    def encode_image(self, images_BCHW: torch.Tensor) -> ImageFeatures:
        cls_BD, patches_BLD = self.vision.forward_tokens(images_BCHW)
        return ImageFeatures(cls_BD, patches_BLD, self.vision_proj(cls_BD))

    def encode_text(
        self, input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor
    ) -> TextFeatures:
        eos_BD = self.text(input_ids_BL, attention_mask_BL)
        return TextFeatures(eos_BD, self.text_proj(eos_BD))

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        local_images: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """pred_v = vision_pred(z_v) predicts z_t; pred_t = text_pred(z_t) predicts z_v (only
        in a model with predictors). `local_images` (LeVLJEPA+'s local views, smaller) give
        z_v_local, which predicts nothing: the multi-view term pulls it to its global views."""
        z_v = self.vision_proj(self.vision(images))
        z_t = self.encode_text(input_ids, attention_mask).z_BE
        out = {"z_v": z_v, "z_t": z_t}
        if local_images is not None:
            out["z_v_local"] = with_buffers_untouched(self.vision_proj, self.vision(local_images))
        if self.has_predictors:
            out |= {"pred_v": self.vision_pred(z_v), "pred_t": self.text_pred(z_t)}
        return out


def with_buffers_untouched(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` with its BatchNorm running statistics updated in copies, not in place: local
    views are normalised by their own batch statistics in training, but the running ones an
    evaluation uses stay those of the global views (zero-shot and retrieval read z_v of whole
    images). Copies, because restoring the buffers after the call would change tensors the
    backward pass has saved."""
    copies = {name: buffer.clone() for name, buffer in module.named_buffers()}
    return torch.func.functional_call(module, copies, (x,))


def build_model(cfg: ModelConfig, seed: int | None = None) -> LevlModel:
    """Randomly initialised model; with a seed the init is reproducible and the caller's global
    RNG state is left untouched (fork_rng), so building a model has no side effects."""
    if seed is None:
        return LevlModel(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LevlModel(cfg)
