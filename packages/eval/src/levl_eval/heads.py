"""One training loop for every head the protocols fit on frozen features: the linear, MLP and
attentive probes, the segmentation and depth heads, and the vlm bridge.

Those heads differ in their module, in what one batch's loss is (cross-entropy on CLS features,
on the token grid with void ignored, SILog on valid depth pixels, next-token cross-entropy under
a frozen LLM) and in their optimiser numbers. Everything else is here, once, so that a fix or a
change of recipe cannot reach some heads and miss others:

- seeded initial weights (`seeded_linear`, `seeded_module`), so a head's start is its seed's;
- the seeded shuffle: a CPU generator seeded with `seed + 1` (the init has `seed`), one
  `randperm` of the sample indices per epoch, cut into `batch_size` batches, at most
  `max_steps` of them, so a rerun sees the same batches in the same order on any device;
- AdamW on the module's parameters (only the head's: a frozen LLM around it never enters the
  optimiser), with a constant or per-step cosine learning rate;
- the module's device, train mode while fitting and eval mode after, and grad mode on even
  when the caller runs under `torch.no_grad()` (the protocols score without gradients).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from levl_eval.progress import progress_bar

Schedule = Literal["constant", "cosine"]
BatchLoss = Callable[[torch.Tensor], torch.Tensor | None]


class HeadSettings(Protocol):
    """The optimisation fields every protocol's settings dataclass names alike."""

    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def epochs(self) -> int | None: ...
    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class HeadTraining:
    """How a head trains. `schedule`: "constant", or "cosine" decaying to 0 over the steps
    planned; `max_steps` (None: no cap) cuts the epochs' batches short (the vlm bridge's budget)."""

    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    seed: int
    schedule: Schedule = "constant"
    max_steps: int | None = None

    @classmethod
    def of(cls, settings: HeadSettings, **overrides) -> HeadTraining:
        """The training a protocol's settings ask for (they, not this, land in the report), with
        `overrides` for what those settings leave implicit (the schedule, the step cap)."""
        fields = {"lr": settings.lr, "weight_decay": settings.weight_decay,
                  "batch_size": settings.batch_size, "epochs": settings.epochs, "seed": settings.seed}
        return cls(**{**fields, **overrides})

    def planned_steps(self, num_samples: int) -> int:
        """Batches the shuffle yields: every epoch's, up to `max_steps`."""
        steps = self.epochs * -(-num_samples // self.batch_size)
        return steps if self.max_steps is None else min(steps, self.max_steps)


def seeded_linear(in_dim: int, out_dim: int, seed: int | torch.Generator, bias: bool = True) -> nn.Linear:
    """nn.Linear with torch's default init bounds (uniform within 1/sqrt(in_dim)), the weight and
    then the bias drawn from `seed` (or from a generator shared by several layers): the head's
    start depends on its seed, not on whatever used the global RNG before."""
    generator = torch.Generator().manual_seed(seed) if isinstance(seed, int) else seed
    layer, bound = nn.Linear(in_dim, out_dim, bias=bias), 1.0 / in_dim**0.5
    with torch.no_grad():
        layer.weight.copy_(torch.empty(out_dim, in_dim).uniform_(-bound, bound, generator=generator))
        if bias:
            layer.bias.copy_(torch.empty(out_dim).uniform_(-bound, bound, generator=generator))
    return layer


def seeded_module(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """A module built with its initial weights drawn from `seed`, leaving the global RNG as it
    was (for modules whose layers, e.g. attention, are not worth initialising by hand)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def shuffled_batches(num_samples: int, training: HeadTraining) -> Iterator[torch.Tensor]:
    """The sample indices of each step, on the CPU: a seeded permutation per epoch, cut into
    batches, drawn lazily (an ImageNet-sized split times 50 epochs is not worth holding)."""
    generator = torch.Generator().manual_seed(training.seed + 1)
    batches = (batch_B for _ in range(training.epochs)
               for batch_B in torch.randperm(num_samples, generator=generator).split(training.batch_size))
    return itertools.islice(batches, training.max_steps)


def lr_schedule(optimizer: torch.optim.Optimizer, training: HeadTraining,
                num_samples: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Constant (a factor of exactly 1), or cosine to 0 over the planned steps."""
    if training.schedule == "cosine":
        steps = max(training.planned_steps(num_samples), 1)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)


def fit_head(module: nn.Module, num_samples: int, batch_loss: BatchLoss, training: HeadTraining,
             device: str | torch.device = "cpu", *, desc: str = "head") -> list[float]:
    """Train `module` in place on `device` with AdamW over seeded minibatches of the indices
    0..num_samples-1; it is left in eval mode. Returns each step's loss.

    `batch_loss(indices_B)` (CPU indices) reads its batch's inputs and targets onto `device`
    and returns the scalar loss, or None when the batch has nothing to learn from (every label
    void, no valid depth): then no step is taken and no loss recorded.

    On a terminal a bar labelled `desc` counts the steps, with the running loss and samples/s;
    the loss is read back from the device at most once per bar refresh interval, never when the
    bar is silent, and the bar touches neither the RNG nor the computation.
    """
    module.to(device).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    schedule = lr_schedule(optimizer, training, num_samples)
    losses: list[torch.Tensor] = []
    bar = progress_bar(total=training.planned_steps(num_samples), desc=desc, unit="step")
    started = shown = time.monotonic()
    seen = 0
    with torch.enable_grad(), bar:
        for batch_B in shuffled_batches(num_samples, training):
            loss = batch_loss(batch_B)
            if loss is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.detach())
            seen += len(batch_B)
            if not bar.disable and time.monotonic() - shown >= bar.mininterval:
                shown = time.monotonic()
                show_training(bar, losses, seen, shown - started)
            bar.update(1)
        if not bar.disable:
            show_training(bar, losses, seen, time.monotonic() - started)
    module.eval()
    return torch.stack(losses).tolist() if losses else []  # one device sync, not one per step


def show_training(bar, losses: list[torch.Tensor], seen: int, elapsed: float) -> None:
    """The bar's postfix: the last step's loss (one device read) and samples/s so far; drawn at
    the bar's next refresh."""
    loss = f"loss={losses[-1].item():.4g}, " if losses else ""
    rate = f"{seen / elapsed:.1f}" if elapsed > 0 else "?"
    bar.set_postfix_str(f"{loss}{rate} samples/s", refresh=False)
