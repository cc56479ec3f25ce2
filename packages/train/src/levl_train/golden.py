"""The golden loss curve: a fixed-seed micro run whose first losses are stored in the repo.

A change that should not alter the math (a refactor, an engine switch, a dependency bump) must
reproduce them; one that should (a new init, a loss fix) regenerates them in the same commit:

    python -m levl_train.golden --write tests/assets/golden_micro.json

The run is deterministic on one thread: deterministic algorithms, no loader workers, tiny
shards written from `levl_data.testing` with a fixed content, and float64 weights and math
(init included), so the curve is the same on every CPU's kernels, not one machine's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from levl_data.testing import make_tiny_shards
from levl_model.jsontext import parse_json
from levl_train.config import TrainConfig
from levl_train.recipes import micro_synthetic

SCHEMA = "levl.golden/v1"
STEPS = 20
TERMS = ("loss", "pred", "pred_v", "pred_t", "sigreg_v", "sigreg_t")
REGENERATE = "python -m levl_train.golden --write tests/assets/golden_micro.json"
# Measured: 5e-11 between ATEN_CPU_CAPABILITY=default and avx2 (float64, 20 steps); a 1%
# change to lambda moves the curve by ~1e-4. The tolerance sits between, far from both.
RTOL = 1e-7


def golden_config(manifest: Path, engine: str = "torch") -> TrainConfig:
    """micro_synthetic, shrunk to a batch of 8 on one thread; 20 steps into its warmup+cosine,
    in float64.

    In float32 the curve was one machine's: this tiny batch is chaotic, and a 1e-7 rounding
    difference (another CPU's vector kernels, ZeRO's flat gradient buffers) grew to 4e-3 by
    step 16 on an AVX-512 machine. In float64 the same differences start at 1e-16 and stay
    far below the tolerance, which can then be tight enough to catch a 1% change to λ.
    """
    cfg = micro_synthetic()
    data = dataclasses.replace(cfg.data, manifest=str(manifest), batch_size=8, num_workers=0,
                               shuffle_buffer=32)
    optim = dataclasses.replace(cfg.optim, lr=1e-4, min_lr=1e-5)
    precision = "fp64" if engine == "torch" else "fp32"  # DeepSpeed reduces no float64 grads
    return dataclasses.replace(cfg, data=data, optim=optim, steps=STEPS, log_every=1,
                               ckpt_every=STEPS, threads=1, deterministic=True, device="cpu",
                               engine=engine, precision=precision)


def golden_losses(workdir: Path, engine: str = "torch",
                  change: Callable[[TrainConfig], TrainConfig] | None = None
                  ) -> dict[str, list[float]]:
    """Run the golden micro run in `workdir` and return every loss term per step; `change`
    edits the config first (a test's deliberate change to the math)."""
    from levl_train.loop import train

    manifest = make_tiny_shards(workdir / "shards", n=48, image_size=32)
    cfg = golden_config(manifest, engine)
    train(change(cfg) if change else cfg, workdir / "run")
    records = [parse_json(line) for line in (workdir / "run" / "metrics.jsonl").open()]
    return {term: [record[term] for record in records] for term in TERMS}


def golden_record(losses: dict[str, list[float]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "regenerate": REGENERATE, "steps": STEPS, "precision": "fp64",
            "torch": torch.__version__, "losses": losses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, help="JSON file to (over)write")
    action.add_argument("--check", type=Path, help="JSON file to compare with")
    parser.add_argument("--rtol", type=float, default=RTOL, help="--check's tolerance")
    parser.add_argument("--engine", choices=("torch", "deepspeed"), default="torch",
                        help="engine to run (the stored curve comes from the torch engine; "
                             "deepspeed runs in float32)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="--check compares the first STEPS steps (a float32 run drifts "
                             "chaotically after ~10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="levl-golden-") as tmp:
        losses = golden_losses(Path(tmp), args.engine)
    if args.check:
        return check(losses, parse_json(args.check.read_text()), args.rtol, args.steps)
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(json.dumps(golden_record(losses), indent=1) + "\n")
    print(f"wrote {STEPS} steps x {len(TERMS)} terms to {args.write}", file=sys.stderr)
    return 0


def check(losses: dict[str, list[float]], stored: dict[str, Any], rtol: float = RTOL,
          steps: int = STEPS) -> int:
    """Exit status 0 when every term stays within rtol of the stored curve over the first
    `steps` steps; prints the worst."""
    worst = max(((abs(a - b) / max(abs(b), 1e-6), term, step)
                 for term in TERMS
                 for step, (a, b) in enumerate(zip(losses[term][:steps],
                                                   stored["losses"][term][:steps],
                                                   strict=True))), default=(0.0, "", 0))
    print(f"largest relative deviation {worst[0]:.2e} ({worst[1]} at step {worst[2] + 1})")
    return 0 if worst[0] <= rtol else 1


if __name__ == "__main__":
    sys.exit(main())
