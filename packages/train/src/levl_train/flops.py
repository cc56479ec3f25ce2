"""Model FLOPs per training sample, and the peak a device could have done in the same time (MFU).

Counted from the config, the way torchtitan and PaLM count (matmuls only; norms, activations,
softmax and the loss are left out, attention is counted in full even where it is causal):

    forward, one sample, T_v = (size/patch)² + 1 image tokens, T_t non-padding text tokens:
      patch embedding   2 · (size/patch)² · 3·patch²·d_v
      ViT blocks        depth_v · [2·T_v·(4 + 2·mlp_ratio)·d_v²  +  4·T_v²·d_v]
      GPT-2 blocks      depth_t · [2·T_t·12·d_t²                 +  4·T_t²·d_t]
      projections       2·(d_v·H_p + H_p·E) + 2·(d_t·H_p + H_p·E)   (linear: 2·d_v·E + 2·d_t·E)
      predictors        2 · 2·(E·H + (depth_pred − 1)·H² + H·E)    (none without predictors)
    training = 3 × forward   (backward = input and weight gradients: twice the forward)

The 2·T·(…)·d² terms are 2 × the blocks' matrix parameters × tokens (the "6·N·T" rule after the
×3); 4·T²·d is QKᵀ plus attention × V. GPT-2's token embedding is a lookup (no FLOPs) and the
model has no LM head. Text FLOPs count only real tokens, so padding shows up as lost MFU.
"""

from __future__ import annotations

import re

import torch

from levl_model.config import HeadsConfig, ModelConfig, TextConfig, VisionConfig

TRAIN_OVER_FORWARD = 3

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, matched in order against
# torch.cuda.get_device_name(); more specific names first ("H100 PCIe" before "H100").
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*NVL", 835.5e12),
    (r"H100.*PCIe", 756.0e12),
    (r"H100", 989.4e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (r"GH200", 989.4e12),
    (r"H200.*NVL", 835.5e12),
    (r"H200", 989.4e12),
    (r"B200", 2250.0e12),
    (r"A100|A800", 312.0e12),  # SXM4 and PCIe alike
    (r"L40S", 362.05e12),
    (r"L40\b", 181.05e12),
    (r"\bL4\b", 121.0e12),
    (r"\bA10\b", 125.0e12),
)

# Dense fp32 (CUDA cores, no tensor cores: torch's default for fp32 matmuls) from the same
# datasheets; B200's is left out (not published per GPU when this was written).
PEAK_FP32_FLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*NVL", 60.0e12),
    (r"H100.*PCIe", 51.0e12),
    (r"H100", 67.0e12),
    (r"GH200", 67.0e12),
    (r"H200.*NVL", 60.0e12),
    (r"H200", 67.0e12),
    (r"A100|A800", 19.5e12),
    (r"L40S", 91.6e12),
    (r"L40\b", 90.5e12),
    (r"\bL4\b", 30.3e12),
    (r"\bA10\b", 31.2e12),
)


def vision_forward_flops(cfg: VisionConfig, image_size: int) -> float:
    """Forward FLOPs of the ViT on one image of `image_size` pixels (the input, not the stored
    position grid: the tower takes any multiple of the patch)."""
    patches = (image_size // cfg.patch_size) ** 2
    tokens = patches + 1  # CLS
    width = cfg.width
    patch_embed = 2 * patches * 3 * cfg.patch_size**2 * width
    per_block = 2 * tokens * (4 + 2 * cfg.mlp_ratio) * width**2 + 4 * tokens**2 * width
    return float(patch_embed + cfg.depth * per_block)


def text_forward_flops(cfg: TextConfig, tokens):
    """Forward FLOPs of GPT-2 on a caption of `tokens` real tokens; a float or a tensor of
    per-sample lengths (the arithmetic is elementwise)."""
    width = cfg.width
    per_block = 2 * tokens * 12 * width**2 + 4 * tokens**2 * width
    return cfg.depth * per_block


def heads_forward_flops(cfg: ModelConfig, views: int = 1, local_views: int = 0) -> float:
    """Both projections and, where the model has them (heads.predictors), both predictors, once
    per sample; the image projection once per view (local views too), its predictor once per
    global view."""
    heads = cfg.heads
    embed, pred = heads.embed_dim, heads.pred_hidden
    projections = projection_forward_flops(cfg.vision.width, heads) * (views + local_views) \
        + projection_forward_flops(cfg.text.width, heads)
    if not heads.predictors:
        return float(projections)
    predictor = 2 * (embed * pred + (heads.pred_depth - 1) * pred**2 + pred * embed)
    return float(projections + (views + 1) * predictor)


def projection_forward_flops(width: int, heads: HeadsConfig) -> int:
    """One tower's projection to E: CLIP's linear map, or LeVLJEPA's MLP through proj_hidden."""
    if heads.projection == "linear":
        return 2 * width * heads.embed_dim
    return 2 * (width * heads.proj_hidden + heads.proj_hidden * heads.embed_dim)


def train_flops_per_sample(cfg: ModelConfig, image_size: int, text_tokens, views: int = 1,
                           local: tuple[int, int] = (0, 0)):
    """Forward + backward FLOPs of one image–caption pair (`text_tokens`: float or tensor), its
    image seen as `views` views (data.views) and `local` = (data.local_views,
    data.local_size) smaller ones."""
    local_views, local_size = local
    forward = views * vision_forward_flops(cfg.vision, image_size) \
        + local_views * vision_forward_flops(cfg.vision, local_size) \
        + heads_forward_flops(cfg, views, local_views) + text_forward_flops(cfg.text, text_tokens)
    return TRAIN_OVER_FORWARD * forward


def peak_flops_for(device_name: str, matmul: str = "bf16") -> float | None:
    """The device's dense peak FLOP/s for `matmul` (bf16 | tf32 | fp32), or None for a device
    the tables do not know.

    TF32 tensor cores run at half the dense bf16 rate on every GPU in the table, to within 1%
    (A100 156/312, H100 SXM 494.7/989.4, L40S 183/362, L4 60/121), so tf32 is derived."""
    table = PEAK_FP32_FLOPS if matmul == "fp32" else PEAK_BF16_FLOPS
    for pattern, peak in table:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak / 2 if matmul == "tf32" else peak
    return None


def matmul_precision(bf16: bool) -> str:
    """What an autocast-free fp32 matmul runs as on CUDA: plain fp32 unless torch was told to
    allow TF32 (`torch.set_float32_matmul_precision("high")`); bf16 under autocast."""
    if bf16:
        return "bf16"
    return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def device_peak_flops(device: torch.device, override_tflops: float | None,
                      matmul: str = "bf16") -> float | None:
    """Peak FLOP/s for MFU at the run's matmul precision: the configured override, else the
    tables for a CUDA device. An fp32 run measured against the bf16 peak would report an MFU
    up to 15x too low. None on the CPU (no meaningful tensor-core peak) and on a GPU the tables
    do not know."""
    if device.type != "cuda":
        return None
    if override_tflops is not None:
        return override_tflops * 1e12
    return peak_flops_for(torch.cuda.get_device_name(device), matmul)
