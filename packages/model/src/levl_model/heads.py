"""Projection and predictor MLPs (METHOD.md "Projections", "Predictors")."""

from __future__ import annotations

import torch
from torch import nn


class Projection(nn.Sequential):
    """Linear → BatchNorm1d → GELU → Linear.

    The encoders end in LayerNorm, which pins feature scale; this MLP restores free variance so
    SIGReg can push its output Z toward an isotropic Gaussian.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x_BD)


class LinearProjection(nn.Linear):
    """A bias-free linear map, initialised N(0, width^-1/2) (CLIP's and open_clip's projection).

    The contrastive baselines L2-normalise their embeddings, so they need no free variance
    after the encoder's LayerNorm: the MLP head with BatchNorm only adds parameters and
    batch coupling there (measured in docs/parity.md).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim, bias=False)
        nn.init.normal_(self.weight, std=in_dim**-0.5)


def build_projection(kind: str, in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """`mlp` (LeVLJEPA's pre-projection, METHOD.md) or `linear` (CLIP's)."""
    if kind == "linear":
        return LinearProjection(in_dim, out_dim)
    return Projection(in_dim, hidden, out_dim)


class Predictor(nn.Sequential):
    """E → [hidden]×depth → E with BatchNorm1d + GELU after every hidden Linear.

    It maps one modality's embedding to the other's, so the two embedding spaces need not be
    identical for the prediction loss to be small (the JEPA asymmetry).
    """

    def __init__(self, embed_dim: int, hidden: int, depth: int) -> None:
        layers: list[nn.Module] = []
        width = embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, embed_dim))
        super().__init__(*layers)

    def forward(self, z_BE: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(z_BE)
