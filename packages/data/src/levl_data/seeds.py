"""Stable seeds for the loaders, and the scope that draws a sample's augmentation from one.

Each sample's augmentation has a seed of its own, derived from what identifies it (sha256, not
Python's salted hash()): ranks and workers draw different augmentations, a rerun draws the
same, and the trainer's own RNG (model init, dropout) neither moves nor matters.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def hashed_seed(*parts: object) -> int:
    """A stable 63-bit seed from `parts`."""
    digest = hashlib.sha256("/".join(map(str, ("levl", *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextlib.contextmanager
def seeded_torch_rng(seed: int) -> Iterator[None]:
    """Seed the global CPU torch RNG (torchvision's transforms draw from it) and put the
    caller's state back after: a loader without workers runs in the trainer's process. Not
    torch.manual_seed: that would reseed the trainer's CUDA generators too."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
