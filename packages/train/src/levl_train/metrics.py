"""Training diagnostics logged beside the losses: alignment and dimensional collapse."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def effective_rank(z_NE: torch.Tensor) -> float:
    """exp(entropy) of the normalized singular values (Roy & Vetterli): E when isotropic, 1 when
    collapsed to a line — the quantity SIGReg exists to keep high."""
    centered_NE = z_NE.float() - z_NE.float().mean(0, keepdim=True)
    singular = torch.linalg.svdvals(centered_NE)
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))


@torch.no_grad()
def matched_vs_shuffled_cosine(z_v: torch.Tensor, z_t: torch.Tensor) -> tuple[float, float]:
    """Mean cosine of matched image/text pairs vs pairs shifted by one: alignment without
    negatives is real only if the first clearly exceeds the second."""
    z_v, z_t = F.normalize(z_v.float(), dim=-1), F.normalize(z_t.float(), dim=-1)
    matched = (z_v * z_t).sum(-1).mean()
    shuffled = (z_v * z_t.roll(1, dims=0)).sum(-1).mean()
    return float(matched), float(shuffled)
