"""Learning-rate schedules of METHOD.md: linear warmup, then cosine or warmup-stable-decay."""

from __future__ import annotations

import math

from levl_train.config import OptimConfig
from levl_train.errors import TrainError


def lr_at(step: int, total_steps: int, optim: OptimConfig) -> float:
    """The learning rate for optimizer step `step` (0-based) of a run of `total_steps`."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        span = max(1, total_steps - optim.warmup_steps)
        progress = min(1.0, (step - optim.warmup_steps) / span)
        return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * progress))
    if optim.schedule == "wsd":  # flat at lr, then linear to min_lr over the last steps
        decay_steps = max(1, round(total_steps * optim.decay_fraction))
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return optim.lr
        progress = min(1.0, (step - decay_start) / decay_steps)
        return optim.lr + (optim.min_lr - optim.lr) * progress
    raise TrainError(f"optim.schedule={optim.schedule!r} is unknown; use cosine or wsd")
