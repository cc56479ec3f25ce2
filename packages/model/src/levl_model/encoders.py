"""The two towers: a timm ViT for images and a transformers GPT-2 for captions.

Both are built directly from our config (random init, no hub access) so a checkpoint's metadata
alone is enough to rebuild the exact architecture.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from transformers import AttentionInterface, GPT2Config, GPT2Model
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from levl_model.config import REFERENCE_INIT_STD, TextConfig, VisionConfig

# transformers' own SDPA attention under a name of levl's. transformers prepares a mask for the
# implementations it knows, and on the way reads from the device whether the captions hold any
# padding (or, with no mask given, whether the positions are packed sequences): a host sync in
# every step. It prepares none for a name it does not know, and SDPA then runs causal
# (`is_causal`, the flash kernels on a GPU), which is all GPT-2 needs here: padding is on the
# right, so no position up to a caption's EOS attends to it.
CAUSAL_SDPA = "levl_causal_sdpa"
AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)


class VisionEncoder(VisionTransformer):
    """timm ViT whose readouts are the final-norm CLS token (global) and patch tokens (dense).

    It subclasses VisionTransformer rather than wrapping it so parameter names stay timm's
    (`vision.blocks.0...`), which keeps timm checkpoints loadable with a prefix strip.
    """

    def __init__(self, cfg: VisionConfig, init_std: float = REFERENCE_INIT_STD) -> None:
        super().__init__(
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.width,
            depth=cfg.depth,
            num_heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            num_classes=0,
            global_pool="token",
            class_token=True,
            dynamic_img_size=True,
        )
        self.config = cfg
        self._rescale_init(init_std)

    @torch.no_grad()
    def _rescale_init(self, init_std: float) -> None:
        """timm draws every Linear weight and pos_embed from N(0, 0.02); rescale them to
        init_std (the CLS token's 1e-6 and the patch conv's fan-in init stay timm's)."""
        factor = init_std / REFERENCE_INIT_STD
        if factor == 1.0:
            return
        self.pos_embed.mul_(factor)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(factor)

    @torch.no_grad()
    def open_clip_init(self) -> None:
        """open_clip's ViT init: PyTorch's Linear defaults (the MLP, the attention output),
        nn.MultiheadAttention's xavier-uniform input projection with zero biases, class and
        position embeddings N(0, width^-1/2)."""
        scale = self.embed_dim ** -0.5
        self.cls_token.normal_(0, scale)
        self.pos_embed.normal_(0, scale)
        for block in self.blocks:
            nn.init.xavier_uniform_(block.attn.qkv.weight)
            nn.init.zeros_(block.attn.qkv.bias)
            block.attn.proj.reset_parameters()
            nn.init.zeros_(block.attn.proj.bias)
            block.mlp.fc1.reset_parameters()
            block.mlp.fc2.reset_parameters()

    def forward_tokens(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (cls_BD, patches_BLD), both after the final LayerNorm."""
        tokens_BTD = self.forward_features(images_BCHW)
        prefix = self.num_prefix_tokens
        return tokens_BTD[:, 0], tokens_BTD[:, prefix:]

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_tokens(images_BCHW)[0]


def gpt2_config(cfg: TextConfig, init_std: float = REFERENCE_INIT_STD) -> GPT2Config:
    """GPT-2 with all dropout off (METHOD.md), positions sized to max_length and its normal
    inits drawn at init_std (GPT-2's own 0.02 by default; residual projections / sqrt(2L)).

    The MLP's activation is GPT-2's tanh-approximated GELU computed by PyTorch's fused kernel
    (`gelu_pytorch_tanh`, F.gelu(approximate="tanh")) rather than transformers' default
    `gelu_new`, the same formula written as seven separate tensor ops (and their backward):
    the same function up to float rounding (measured ≤ 1 ulp of x apart in float32 and
    float64), ~2.4× faster forward + backward on the CPU; in a profile of the tiny training
    step gelu_new's ops were ~10% of the step and the largest cost GPT-2 had beyond open_clip's
    text tower.
    """
    return GPT2Config(
        activation_function="gelu_pytorch_tanh",
        n_embd=cfg.width,
        n_layer=cfg.depth,
        n_head=cfg.heads,
        n_positions=cfg.max_length,
        vocab_size=cfg.vocab_size,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
        initializer_range=init_std,
        attn_implementation=CAUSAL_SDPA,
    )


def last_unmasked(hidden_BLD: torch.Tensor, attention_mask_BL: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last attended position: the EOS the tokenizer appends (right padding)."""
    last_B = attention_mask_BL.long().sum(dim=1) - 1
    rows_B = torch.arange(hidden_BLD.shape[0], device=hidden_BLD.device)
    return hidden_BLD[rows_B, last_B.clamp(min=0)]


class TextEncoder(nn.Module):
    """GPT-2 whose caption feature is the hidden state at the EOS (last unmasked) token."""

    def __init__(self, cfg: TextConfig, init_std: float = REFERENCE_INIT_STD) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = GPT2Model(gpt2_config(cfg, init_std))

    @torch.no_grad()
    def open_clip_init(self) -> None:
        """open_clip's text-transformer init (TextTransformer.init_parameters): tokens N(0, 0.02),
        positions N(0, 0.01), attention in width^-1/2, residual projections width^-1/2 (2L)^-1/2,
        MLP in (2 width)^-1/2; attention biases zero, MLP biases PyTorch's Linear default."""
        gpt2, width, depth = self.transformer, self.config.width, self.config.depth
        attn_std, fc_std = width ** -0.5, (2 * width) ** -0.5
        proj_std = attn_std * (2 * depth) ** -0.5
        gpt2.wte.weight.normal_(0, 0.02)
        gpt2.wpe.weight.normal_(0, 0.01)
        for block in gpt2.h:
            block.attn.c_attn.weight.normal_(0, attn_std)
            block.attn.c_proj.weight.normal_(0, proj_std)
            block.mlp.c_fc.weight.normal_(0, fc_std)
            block.mlp.c_proj.weight.normal_(0, proj_std)
            for layer in (block.mlp.c_fc, block.mlp.c_proj):  # Conv1D: weight [in, out]
                bound = layer.weight.shape[0] ** -0.5
                layer.bias.uniform_(-bound, bound)

    def forward(self, input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor) -> torch.Tensor:
        """Return eos_BD. Padding is on the right and attention causal (CAUSAL_SDPA), so the
        mask is needed only to find the EOS."""
        hidden_BLD = self.transformer(input_ids=input_ids_BL, use_cache=False).last_hidden_state
        return last_unmasked(hidden_BLD, attention_mask_BL)
