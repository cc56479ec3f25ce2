"""Monocular depth metrics (Eigen et al. 2014), as BTS, AdaBins and DINOv2 compute them on NYUv2.

For one image, with d the ground truth and p the prediction (both in metres) over its valid
pixels V = {min_depth < d <= max_depth}, and p clamped to [min_depth, max_depth]:

    RMSE    = sqrt( (1/|V|) * sum_V (p - d)^2 )             metres, lower is better
    AbsRel  = (1/|V|) * sum_V |p - d| / d                     lower is better
    delta1  = (1/|V|) * #{ max(p / d, d / p) < 1.25 }          share of pixels, higher is better

Each is computed per image and then averaged over the images that have at least one valid
pixel (per-image averaging, as those codebases do, so a frame with more valid pixels does not
weigh more). An image without any valid pixel is left out and counted.
"""

from __future__ import annotations

import torch

DELTA1_THRESHOLD = 1.25
METRICS = ("rmse", "abs_rel", "delta1")


def valid_depth(depth_NHW: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Pixels whose ground truth counts: measured (not 0) and inside (min_depth, max_depth]."""
    return (depth_NHW > min_depth) & (depth_NHW <= max_depth)


def per_image_depth_errors(
    pred_NHW: torch.Tensor, target_NHW: torch.Tensor, min_depth: float, max_depth: float
) -> dict[str, torch.Tensor]:
    """RMSE, AbsRel and delta1 of each image with a valid pixel ([N'] float64 each)."""
    valid_NHW = valid_depth(target_NHW, min_depth, max_depth)
    count_N = valid_NHW.flatten(1).sum(dim=1).double()
    keep_N = count_N > 0
    pred_NHW = pred_NHW.double().clamp(min_depth, max_depth)
    target_NHW = torch.where(valid_NHW, target_NHW.double(), torch.ones_like(pred_NHW))
    mask_NHW = valid_NHW.double()

    def image_mean(values_NHW: torch.Tensor) -> torch.Tensor:
        return (values_NHW * mask_NHW).flatten(1).sum(dim=1)[keep_N] / count_N[keep_N]

    ratio_NHW = torch.maximum(pred_NHW / target_NHW, target_NHW / pred_NHW)
    return {
        "rmse": image_mean((pred_NHW - target_NHW).square()).sqrt(),
        "abs_rel": image_mean((pred_NHW - target_NHW).abs() / target_NHW),
        "delta1": image_mean((ratio_NHW < DELTA1_THRESHOLD).double()),
    }


def summarize_depth_errors(parts: list[dict[str, torch.Tensor]], images_seen: int) -> dict:
    """Means over every scored image of the per-image errors of each batch."""
    per_image = {name: torch.cat([part[name] for part in parts]) for name in METRICS}
    scored = int(per_image["rmse"].numel())
    means = {name: per_image[name].mean().item() if scored else float("nan") for name in METRICS}
    return {**means, "images_scored": scored, "images_without_valid_depth": images_seen - scored}
