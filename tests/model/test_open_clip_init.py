"""`model.init = "open_clip"` draws levl's towers as open_clip draws its own (to compare the two
trainers with the init out of the way): every weight's scale against a real open_clip CLIP of
the same width and depth."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from levl_model import build_model
from levl_model.config import INITS, HeadsConfig, ModelConfig, TextConfig, VisionConfig

WIDTH, DEPTH = 192, 4

# levl parameter (block 0 / 1) -> open_clip parameter, both seen as [fan_out, fan_in] or flat
PAIRS = {
    "vision.cls_token": "visual.class_embedding",
    "vision.pos_embed": "visual.positional_embedding",
    "vision.blocks.{i}.attn.qkv.weight": "visual.transformer.resblocks.{i}.attn.in_proj_weight",
    "vision.blocks.{i}.attn.proj.weight": "visual.transformer.resblocks.{i}.attn.out_proj.weight",
    "vision.blocks.{i}.mlp.fc1.weight": "visual.transformer.resblocks.{i}.mlp.c_fc.weight",
    "vision.blocks.{i}.mlp.fc1.bias": "visual.transformer.resblocks.{i}.mlp.c_fc.bias",
    "vision.blocks.{i}.mlp.fc2.weight": "visual.transformer.resblocks.{i}.mlp.c_proj.weight",
    "text.transformer.wte.weight": "token_embedding.weight",
    "text.transformer.wpe.weight": "positional_embedding",
    "text.transformer.h.{i}.attn.c_attn.weight": "transformer.resblocks.{i}.attn.in_proj_weight",
    "text.transformer.h.{i}.attn.c_proj.weight": "transformer.resblocks.{i}.attn.out_proj.weight",
    "text.transformer.h.{i}.mlp.c_fc.weight": "transformer.resblocks.{i}.mlp.c_fc.weight",
    "text.transformer.h.{i}.mlp.c_fc.bias": "transformer.resblocks.{i}.mlp.c_fc.bias",
    "text.transformer.h.{i}.mlp.c_proj.weight": "transformer.resblocks.{i}.mlp.c_proj.weight",
    "text.transformer.h.{i}.mlp.c_proj.bias": "transformer.resblocks.{i}.mlp.c_proj.bias",
}
ZERO = ("vision.blocks.{i}.attn.qkv.bias", "vision.blocks.{i}.attn.proj.bias",
        "text.transformer.h.{i}.attn.c_attn.bias", "text.transformer.h.{i}.attn.c_proj.bias")


def levl_params(init: str) -> dict[str, torch.Tensor]:
    cfg = ModelConfig(VisionConfig(WIDTH, DEPTH, 3, patch_size=16, image_size=112),
                      TextConfig(WIDTH, DEPTH, 3), HeadsConfig(embed_dim=64, projection="linear"))
    return dict(build_model(dataclasses.replace(cfg, init=init), seed=0).named_parameters())


def open_clip_params() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = CLIP(embed_dim=64, vision_cfg=CLIPVisionCfg(layers=DEPTH, width=WIDTH, head_width=64,
                                                        patch_size=16, image_size=112),
                 text_cfg=CLIPTextCfg(width=WIDTH, heads=3, layers=DEPTH))
    return dict(model.named_parameters())


def test_open_clip_init_matches_open_clips_own_scale_for_every_weight() -> None:
    ours, theirs = levl_params("open_clip"), open_clip_params()
    for block in (0, DEPTH - 1):
        for levl_name, oc_name in PAIRS.items():
            a, b = ours[levl_name.format(i=block)], theirs[oc_name.format(i=block)]
            assert a.numel() == b.numel() or "wte" in levl_name, levl_name  # vocabularies differ
            tolerance = 0.2 if a.numel() < 5000 else 0.05  # sampling error of a std estimate
            assert a.std().item() == pytest.approx(b.std().item(), rel=tolerance), levl_name
        for name in ZERO:
            assert torch.count_nonzero(ours[name.format(i=block)]) == 0, name


def test_the_default_init_differs_from_open_clips_where_the_parity_doc_says() -> None:
    """The comparison above can fail: levl's own init draws the vision MLP out-projection at
    0.02 * sqrt(768 / 192) = 0.04, twice open_clip's."""
    ours = levl_params("width_scaled")
    assert ours["vision.blocks.0.mlp.fc2.weight"].std().item() == pytest.approx(0.04, rel=0.05)
    assert open_clip_params()["visual.transformer.resblocks.0.mlp.c_proj.weight"].std().item() == \
        pytest.approx(0.0208, rel=0.05)


def test_every_init_is_one_the_checkpoint_schema_accepts() -> None:
    """A run with any init must be able to write its checkpoint metadata."""
    schema = json.loads((resources.files("levl_model") / "schemas" / "checkpoint-v1.schema.json").read_text())

    def init_enums(node):
        if isinstance(node, dict):
            if isinstance(node.get("init"), dict) and "enum" in node["init"]:
                yield node["init"]["enum"]
            for value in node.values():
                yield from init_enums(value)
        elif isinstance(node, list):
            for value in node:
                yield from init_enums(value)

    assert [sorted(enum) for enum in init_enums(schema)] == [sorted(INITS)]
