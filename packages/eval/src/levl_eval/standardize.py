"""Standardisation fitted on a train split: per-dimension over patch tokens (segmentation head,
vlm bridge, attentive probe) and L2-normalise-then-standardise over CLS features (linear and MLP
probes). Kept outside `protocols` so helpers can import it without importing every protocol."""

from __future__ import annotations

from collections.abc import Callable
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
    def fit(cls, train_ND: torch.Tensor, std_clamp: float,
            chunk_bytes: int = 32 * 2**20) -> Standardizer:
        """Mean and population std of the L2-normalised rows, accumulated in float64 over chunks
        of rows of about `chunk_bytes` in float64, so a large (mapped) split is never copied
        whole. The sums are taken about the first unit row (a shifted single pass): no
        cancellation, and a dimension constant over the split gets std 0 (then clamped)."""
        row_bytes = max(1, train_ND.shape[-1] * 8)
        shift_D = unit_rows(train_ND[:1]).sum(dim=0)  # zeros for an empty split (mean nan)
        total_D, squares_D = torch.zeros_like(shift_D), torch.zeros_like(shift_D)
        for part_ND in train_ND.split(max(1, chunk_bytes // row_bytes)):
            shifted_ND = unit_rows(part_ND) - shift_D
            total_D += shifted_ND.sum(dim=0)
            squares_D += shifted_ND.square().sum(dim=0)
        count = train_ND.shape[0]
        offset_D = total_D / count
        std_D = (squares_D / count - offset_D.square()).clamp_min(0).sqrt()
        return cls((shift_D + offset_D).float(), std_D.float().clamp_min(std_clamp))

    def __call__(self, features_ND: torch.Tensor) -> torch.Tensor:
        """Row-local: a row comes out the same (bitwise) alone, in a batch or in the whole set."""
        device = features_ND.device
        return (F.normalize(features_ND.float(), dim=-1) - self.mean_D.to(device)) / self.std_D.to(device)

    def reader(self, features_ND: torch.Tensor,
               device: str | torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """`read(indices_B)`: those rows standardised, on `device`, for a probe's training and
        scoring loops, so no standardised copy of a split is ever made whole (ImageNet's train
        CLS features are 3.9 GB, mapped from disk). On a CUDA device the raw features are
        copied there once (device memory, and no per-step host-to-device copy); elsewhere each
        batch's rows are gathered from `features_ND` as they are needed."""
        if torch.device(device).type == "cuda":
            features_ND = features_ND.to(device)
        where = features_ND.device
        standardize = Standardizer(self.mean_D.to(where), self.std_D.to(where))
        return lambda batch_B: standardize(features_ND[batch_B.to(where)]).to(device)


def unit_rows(rows_ND: torch.Tensor) -> torch.Tensor:
    """The rows L2-normalised in float32 (as the probe reads them), then widened to float64."""
    return F.normalize(rows_ND.float(), dim=-1).double()
