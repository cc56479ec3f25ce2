"""Standardisation fitted on a train split: per-dimension over patch tokens (segmentation head,
vlm bridge, attentive probe) and L2-normalise-then-standardise over CLS features (linear and MLP
probes). Kept outside `protocols` so helpers can import it without importing every protocol."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TokenStandardizer:
    """Per-dimension mean/std over every train token (no L2 normalisation, unlike the probe)."""

    mean_D: torch.Tensor
    std_D: torch.Tensor

    @classmethod
    def fit(cls, tokens_NLD: torch.Tensor, std_clamp: float,
            chunk_bytes: int = 32 * 2**20) -> TokenStandardizer:
        """Accumulated in float64 over chunks of images of about `chunk_bytes` in float64, so a
        large (mapped) cache is never copied whole and the copies stay small at any width."""
        total_D = torch.zeros(tokens_NLD.shape[-1], dtype=torch.float64)
        squares_D = torch.zeros_like(total_D)
        image_bytes = max(1, tokens_NLD[0].numel() * 8) if len(tokens_NLD) else 1
        for part_NLD in tokens_NLD.split(max(1, chunk_bytes // image_bytes)):
            flat_TD = part_NLD.reshape(-1, part_NLD.shape[-1]).double()
            total_D += flat_TD.sum(dim=0)
            squares_D += flat_TD.square().sum(dim=0)
        count = tokens_NLD.shape[0] * tokens_NLD.shape[1]
        mean_D = total_D / count
        std_D = (squares_D / count - mean_D.square()).clamp_min(0).sqrt()
        return cls(mean_D.float(), std_D.float().clamp_min(std_clamp))

    def __call__(self, tokens_BLD: torch.Tensor) -> torch.Tensor:
        return (tokens_BLD.float() - self.mean_D.to(tokens_BLD.device)) / self.std_D.to(tokens_BLD.device)


@dataclass(frozen=True)
class Standardizer:
    """L2-normalise then standardise with statistics fitted on the train features only."""

    mean_D: torch.Tensor
    std_D: torch.Tensor

    @classmethod
    def fit(cls, train_ND: torch.Tensor, std_clamp: float) -> Standardizer:
        unit_ND = F.normalize(train_ND.float(), dim=-1)
        return cls(unit_ND.mean(dim=0), unit_ND.std(dim=0, correction=0).clamp_min(std_clamp))

    def __call__(self, features_ND: torch.Tensor) -> torch.Tensor:
        return (F.normalize(features_ND.float(), dim=-1) - self.mean_D) / self.std_D
