"""Linear monocular depth on frozen patch tokens (METHOD.md, "NYUv2 depth").

Tokens (B, L, D) are standardised per dimension with the train tokens' mean/std (as for linear
segmentation), and one nn.Linear with bias maps each token to logits over K = 256 depth bins
whose centres are log-spaced between `bin_min_depth` and the dataset's max depth; the token's
depth is the softmax-weighted mean of the centres (classification with the expected value as
prediction). The (B, L, K) logits are permuted to (B, K, L) before being reshaped to the token
grid. Images reach the encoder whole (`levl_eval.geometry.FULL_FRAME`), so the per-token depth
covers the frame: in training it is upsampled bilinearly to the train maps (read through the
same geometry, nearest) and the head learns on every valid pixel with the scale-invariant log
loss (Eigen et al. 2014; variance focus 0.85 as in BTS / DINOv2). RMSE, AbsRel and delta1
(levl_eval.protocols.depth.metrics) are measured on each test map at its original resolution (NYUv2:
640x480, inside Eigen's crop in those pixels), the prediction upsampled bilinearly
(align_corners=False) to it an image at a time, beside a baseline that predicts the train
split's mean depth everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from levl_eval.data.splits import EvalSplit
from levl_eval.errors import EvalDataError
from levl_eval.features.types import FeatureSource, PatchFeatures
from levl_eval.geometry import FULL_FRAME
from levl_eval.heads import HeadTraining, fit_head, seeded_linear
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.depth.data import DepthData
from levl_eval.protocols.depth.metrics import (
    per_image_depth_errors,
    summarize_depth_errors,
    valid_depth,
)
from levl_eval.protocols.segmentation.protocol import to_frame, token_grid_logits
from levl_eval.standardize import TokenStandardizer


@dataclass(frozen=True)
class DepthSettings:
    """Head settings (METHOD.md gives the head and metrics; optimiser settings are ours, those of
    the linear segmentation head)."""

    num_bins: int = 256
    bin_min_depth: float = 0.1  # metres; NYUv2's Kinect measures nothing nearer than ~0.5 m
    lr: float = 1e-2
    weight_decay: float = 1e-2
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 16
    seed: int = 0
    std_clamp: float = 1e-8
    silog_variance_focus: float = 0.85


def bin_centres(settings: DepthSettings, max_depth: float) -> torch.Tensor:
    """[K] depth bin centres in metres, log-spaced from bin_min_depth to max_depth."""
    return torch.logspace(math.log10(settings.bin_min_depth), math.log10(max_depth), settings.num_bins)


def grid_depth(
    head: nn.Linear, tokens_BLD: torch.Tensor, grid_hw: tuple[int, int], centres_K: torch.Tensor
) -> torch.Tensor:
    """(B, L, D) -> (B, h, w) metres: the expected bin centre of each token."""
    probs_BKhw = token_grid_logits(head, tokens_BLD, grid_hw).softmax(dim=1)
    return torch.einsum("bkhw,k->bhw", probs_BKhw, centres_K)


def predict_depth(
    head: nn.Linear, tokens_BLD: torch.Tensor, grid_hw: tuple[int, int], centres_K: torch.Tensor,
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """(B, L, D) -> (B, H, W) metres: expected bin centre per token, upsampled bilinearly."""
    return to_frame(grid_depth(head, tokens_BLD, grid_hw, centres_K)[:, None], out_hw)[:, 0]


def silog_loss(pred_P: torch.Tensor, target_P: torch.Tensor, variance_focus: float) -> torch.Tensor:
    """sqrt(mean(g^2) - focus * mean(g)^2), g = log pred - log target, over valid pixels."""
    log_diff_P = pred_P.log() - target_P.log()
    variance = log_diff_P.square().mean() - variance_focus * log_diff_P.mean().square()
    return variance.clamp_min(1e-12).sqrt()


def train_depth_head(
    train: PatchFeatures, standardize: TokenStandardizer, centres_K: torch.Tensor,
    data: DepthData, settings: DepthSettings, device: str,
) -> nn.Linear:
    """Minibatch SILog on the valid pixels at a constant learning rate; batches without a valid
    pixel are skipped (no step: the loss is undefined there)."""
    head = seeded_linear(train.tokens_NLD.shape[-1], settings.num_bins, settings.seed)
    label_hw, centres_K = tuple(train.masks_NHW.shape[-2:]), centres_K.to(device)

    def batch_loss(batch_B: torch.Tensor) -> torch.Tensor | None:
        target_BHW = train.masks_NHW[batch_B].to(device)
        valid_BHW = valid_depth(target_BHW, data.min_depth, data.max_depth)
        if not bool(valid_BHW.any()):
            return None
        tokens_BLD = standardize(train.tokens_NLD[batch_B].to(device))
        pred_BHW = predict_depth(head, tokens_BLD, train.grid_hw, centres_K, label_hw)
        return silog_loss(pred_BHW[valid_BHW], target_BHW[valid_BHW], settings.silog_variance_focus)

    fit_head(head, train.num_samples, batch_loss, HeadTraining.of(settings), device,
             desc="depth head")
    return head


@torch.no_grad()
def score_on_test(
    head: nn.Linear, test: PatchFeatures, standardize: TokenStandardizer, centres_K: torch.Tensor,
    data: DepthData, settings: DepthSettings, device: str, constant: float,
) -> tuple[dict, dict]:
    """(head metrics, metrics of predicting `constant` metres everywhere) on the test split, each
    image at its own map's original resolution (only per-image errors are kept)."""
    centres_K, maps = centres_K.to(device), test.scored_maps()
    head_parts, constant_parts = [], []
    for batch_B in torch.arange(test.num_samples).split(settings.eval_batch_size):
        tokens_BLD = standardize(test.tokens_NLD[batch_B].to(device))
        depth_Bhw = grid_depth(head, tokens_BLD, test.grid_hw, centres_K)
        for depth_hw, index in zip(depth_Bhw, batch_B.tolist(), strict=True):
            target_1HW = maps[index][None].to(device)
            pred_1HW = to_frame(depth_hw[None, None], tuple(target_1HW.shape[-2:]))[0]
            head_parts.append(per_image_depth_errors(pred_1HW, target_1HW, data.min_depth, data.max_depth))
            constant_parts.append(per_image_depth_errors(
                torch.full_like(target_1HW, constant), target_1HW, data.min_depth, data.max_depth))
    return (summarize_depth_errors(head_parts, test.num_samples),
            summarize_depth_errors(constant_parts, test.num_samples))


def depth_patches(encoder: FeatureSource, split: EvalSplit, data: DepthData,
                  frame_maps: bool = False) -> PatchFeatures:
    """The split's patch features under the full-frame geometry (with its maps at their original
    resolution when it is scored), refusing a split whose maps are not depth or hold none."""
    patches = encoder.patch_features(split, FULL_FRAME, frame_maps=frame_maps)
    maps = patches.scored_maps()
    if not maps or not all(depth_HW.is_floating_point() and depth_HW.numel() for depth_HW in maps):
        dtype = maps[0].dtype if maps else patches.masks_NHW.dtype
        raise EvalDataError(f"split {split.name}: has no depth maps (per-pixel maps of "
                            f"dtype {dtype}); read it with a depth mask_kind")
    if not any(bool(valid_depth(depth_HW, data.min_depth, data.max_depth).any()) for depth_HW in maps):
        raise EvalDataError(f"split {split.name}: no pixel has depth in ({data.min_depth}, "
                            f"{data.max_depth}] m; check that the maps are in millimetres")
    return patches


def mean_valid_depth(patches: PatchFeatures, data: DepthData) -> float:
    """Mean depth over every valid train pixel (the constant baseline's prediction)."""
    total, count = 0.0, 0
    for part_NHW in patches.masks_NHW.split(256):
        valid = valid_depth(part_NHW, data.min_depth, data.max_depth)
        total += part_NHW[valid].double().sum().item()
        count += int(valid.sum())
    return total / count


class LinearDepth(EvalProtocol):
    """Linear depth-bin head on frozen patch tokens: trained on train, RMSE/AbsRel/delta1 on test."""

    name: ClassVar[str] = "depth"

    def __init__(self, settings: DepthSettings | None = None, device: str = "cpu") -> None:
        super().__init__(device)
        self.head_settings = settings or DepthSettings()

    def settings(self) -> dict:
        return {
            **asdict(self.head_settings),
            "feature": "final-norm patch tokens (float16 cache)",
            "preprocessing": "standardise per dimension with train-token mean/std",
            "head": "nn.Linear with bias on each token -> logits over depth bins; (B,L,K) permuted "
                    "to (B,K,L), reshaped to (B,K,h,w)",
            "bins": "centres log-spaced from bin_min_depth to the dataset's max depth",
            "geometry": FULL_FRAME.describe(),
            "prediction": "softmax-weighted mean of the bin centres per token, upsampled "
                          "bilinearly (align_corners=False) to each test map's original H x W",
            "optimizer": "AdamW", "schedule": "constant",
            "loss": "scale-invariant log loss (SILog) over valid pixels of the train maps read "
                    "through the input geometry (nearest)",
            "label_resolution": "full frame at the label's original resolution, bilinear depth "
                                "(each token's expected depth)",
            "metrics": "RMSE (m), AbsRel, delta<1.25 per image over valid pixels of its "
                       "full-resolution map, prediction clamped to the depth range, averaged "
                       "over images",
        }

    def run(self, encoder: FeatureSource, data: DepthData) -> dict:
        settings = self.head_settings
        train = depth_patches(encoder, data.train, data)
        test = depth_patches(encoder, data.test, data, frame_maps=True)
        standardize = TokenStandardizer.fit(train.tokens_NLD, settings.std_clamp)
        centres_K = bin_centres(settings, data.max_depth)
        head = train_depth_head(train, standardize, centres_K, data, settings, self.device)
        train_mean = mean_valid_depth(train, data)
        metrics, baseline = score_on_test(head, test, standardize, centres_K, data, settings,
                                          self.device, train_mean)
        return {
            **metrics,
            "mean_depth_baseline": {**baseline, "prediction_m": train_mean},
            "settings": self.settings(),
            "data": {"dataset": data.dataset, "train": train.sizes(), "test": test.sizes(),
                     "depth_range_m": [data.min_depth, data.max_depth]},
        }
