"""The collapse and alignment diagnostics logged during training."""

from __future__ import annotations

import torch

from levl_train.metrics import effective_rank, matched_vs_shuffled_cosine


def test_effective_rank_is_high_for_isotropic_and_one_for_collapsed():
    torch.manual_seed(0)
    isotropic = torch.randn(4096, 16)
    line = torch.randn(4096, 1) * torch.randn(1, 16)
    assert effective_rank(isotropic) > 15.0
    assert effective_rank(line) < 1.1


def test_matched_cosine_exceeds_shuffled_only_when_pairs_align():
    torch.manual_seed(0)
    z_v = torch.randn(256, 32)
    matched, shuffled = matched_vs_shuffled_cosine(z_v, z_v + 0.1 * torch.randn(256, 32))
    assert matched > 0.9 and abs(shuffled) < 0.2
    matched, shuffled = matched_vs_shuffled_cosine(z_v, torch.randn(256, 32))
    assert abs(matched - shuffled) < 0.2
