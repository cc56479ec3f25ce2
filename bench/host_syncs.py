"""Host synchronisations in levl's training step on CUDA, and what a per-step wait would cost.

levl's step is meant to queue its kernels and return without waiting for the device (uint8
images normalised on the device, SIGReg's slices drawn there, loss and gradient norm left on the
device until a log step). This counts the synchronising CUDA calls one step makes, with
torch.cuda.set_sync_debug_mode("warn") (torch's own detector: `.item()`, a blocking copy, a
data-dependent shape), and times the steps two ways over the same batches:

  levl step         engine.step as the training loop calls it, timed over --steps steps with one
                    wait at the end (how the loop runs between log steps)
  + sync each step  the same, with torch.cuda.synchronize() after every step (the reference: what
                    a `.item()` per step costs)

    .venv/bin/python bench/host_syncs.py --size base --batch 128 --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_model.config import model_config  # noqa: E402
from levl_train.distributed import DistEnv  # noqa: E402
from levl_train.engine import TorchEngine  # noqa: E402
from levl_train.recipes import vit_b16_datacomp_l  # noqa: E402
from levl_train.setup import build_module  # noqa: E402

CONTEXT, VOCAB = 77, 50257


def pinned_batch(batch: int, image_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """What the loader hands the step: uint8 images and token ids in pinned memory."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8,
                           generator=generator)
    ids = torch.randint(0, VOCAB, (batch, CONTEXT), generator=generator)
    return tuple(t.pin_memory() for t in (images, ids, torch.ones_like(ids)))


def count_syncs(engine: TorchEngine, batches: list, device: torch.device) -> int:
    """Synchronising calls torch reports during one step (copies in, step, nothing read back)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            on_device = [tuple(t.to(device, non_blocking=True) for t in b) for b in batches]
            engine.step(on_device, step=100)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        print(f"  sync: {str(warning.message).splitlines()[0]} ({warning.filename}:{warning.lineno})")
    return len(caught)


def seconds_per_step(engine: TorchEngine, batches: list, device: torch.device, steps: int,
                     sync_each: bool) -> float:
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        on_device = [tuple(t.to(device, non_blocking=True) for t in b) for b in batches]
        engine.step(on_device, step=step)
        if sync_each:
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(f"{k}: {v}" for k, v in describe_machine(sys.argv).items()))
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (this benchmark is GPU-only)")
        return 0
    device = torch.device("cuda", 0)
    print(f"device: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    base = vit_b16_datacomp_l()
    cfg = dataclasses.replace(base, model=model_config(args.size, embed_dim=256), engine="torch",
                              device="cuda")
    engine = TorchEngine(build_module(cfg, DistEnv(), device), cfg)
    batches = [pinned_batch(args.batch, cfg.preprocess.size, seed=0)]
    for _ in range(3):  # warm-up: cuBLAS handles, autotuning, the allocator
        seconds_per_step(engine, batches, device, 1, sync_each=False)
    syncs = count_syncs(engine, batches, device)
    timed = {name: median(seconds_per_step(engine, batches, device, args.steps, sync_each)
                          for _ in range(args.repeats))
             for name, sync_each in (("levl step", False), ("+ sync each step", True))}
    print(f"\nsynchronising calls in one step: {syncs}")
    print("| step | s/step (median) | samples/s | vs + sync each step |\n|---|---|---|---|")
    reference = timed["+ sync each step"]
    for name, seconds in timed.items():
        print(f"| {name} | {seconds:.4f} | {args.batch / seconds:.1f} | {reference / seconds:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
