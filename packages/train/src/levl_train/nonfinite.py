"""A non-finite loss, noticed without reading the device every step.

The first step whose loss was NaN or infinite is kept in a device tensor; the loop reads it (on
every rank, a collective) only where it logs or checkpoints. So a step never waits for the
device, a diverged run still stops within `log_every` steps naming the step it diverged at, and
no checkpoint is ever written from weights a non-finite loss has touched.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from levl_train.errors import TrainError
from levl_train.throughput import reduce_over_ranks

NONE = 2**62  # no non-finite loss seen (exact in the float64 of reduce_over_ranks)


class NonFiniteWatch:
    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), NONE, dtype=torch.int64, device=device)

    def update(self, step: int, loss: torch.Tensor) -> None:
        """Record `step` if its loss is not finite and none was before (device ops only)."""
        unseen = self.first_bad.eq(NONE)
        self.first_bad = torch.where(unseen & ~torch.isfinite(loss), step, self.first_bad)

    def check(self, device: torch.device) -> None:
        """Raise, on every rank, when any rank saw a non-finite loss (the earliest step)."""
        (first,) = reduce_over_ranks([float(self.first_bad)], dist.ReduceOp.MIN, device)
        if first < NONE:
            raise TrainError(f"loss is not finite at step {int(first) + 1}; lower optim.lr "
                             "(or look for a broken sample)")
