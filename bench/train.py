"""Training-step throughput: levl's LeVLJEPA step against open_clip's CLIP step, same towers.

Three steps on the same random batch, each a median over --repeats after --warmup steps:

  levl levljepa   levl_train's TorchEngine.step: timm ViT + GPT-2 forward, projection and
                  predictor heads, SIGReg (METHOD.md's 4096 slices), backward, AdamW
  levl infonce    the same engine and towers with the InfoNCE baseline objective
  open_clip       open_clip.CLIP with towers of the same width / depth / heads / patch / context
                  (its own ViT and causal text transformer), ClipLoss, backward, AdamW — how
                  users pretrain CLIP today, and the reference the ratios divide by

samples/s = batch / step time. CPU: fp32, `--size tiny` at 224 px by default. CUDA (when a GPU is
present): bf16 autocast for all three, `--size base` (ViT-B/16 + GPT-2 width 768) by default, and
MFU from levl's FLOP count over the device's bf16 peak. Needs open_clip_torch
(`pip install open_clip_torch`).

    .venv/bin/python bench/train.py --repeats 5 [--append bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_model.config import SIZES, ObjectiveConfig, model_config  # noqa: E402
from levl_train.distributed import DistEnv  # noqa: E402
from levl_train.engine import TorchEngine  # noqa: E402
from levl_train.flops import peak_flops_for, train_flops_per_sample  # noqa: E402
from levl_train.recipes import micro_synthetic  # noqa: E402
from levl_train.setup import build_module  # noqa: E402

CONTEXT, VOCAB = 77, 50257


def levl_step(args, device: torch.device, objective: str) -> tuple[Callable[[], None], float]:
    """A closure running one levl optimizer step, and levl's training FLOPs per sample."""
    cfg = dataclasses.replace(
        micro_synthetic(),
        model=model_config(args.size, image_size=args.image_size, patch_size=args.patch),
        objective=ObjectiveConfig(name=objective),
        device=device.type, precision="bf16" if device.type == "cuda" else "fp32",
    )
    engine = TorchEngine(build_module(cfg, DistEnv(), device), cfg)
    batch, steps = [random_batch(args, device)], itertools.count()
    return (lambda: engine.step(batch, next(steps))), \
        train_flops_per_sample(cfg.model, args.image_size, float(CONTEXT))


def open_clip_step(args, device: torch.device) -> Callable[[], None]:
    """A closure running one open_clip CLIP optimizer step on towers of levl's shape."""
    import open_clip
    from open_clip.loss import ClipLoss

    width, depth, heads = SIZES[args.size]
    model = open_clip.CLIP(
        embed_dim=256,
        vision_cfg=open_clip.CLIPVisionCfg(layers=depth, width=width, head_width=width // heads,
                                           patch_size=args.patch, image_size=args.image_size),
        text_cfg=open_clip.CLIPTextCfg(context_length=CONTEXT, vocab_size=VOCAB, width=width,
                                       heads=heads, layers=depth),
    ).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = ClipLoss()
    images, ids, _ = random_batch(args, device)

    def step() -> None:
        with autocast(device):
            image_features, text_features, scale = model(images, ids)[:3]
            loss = loss_fn(image_features, text_features, scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def random_batch(args, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator)
    ids = torch.randint(0, VOCAB, (args.batch, CONTEXT), generator=generator)
    return images.to(device), ids.to(device), torch.ones_like(ids).to(device)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seconds_per_step(step: Callable[[], None], device: torch.device, warmup: int,
                     repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    defaults = {"cuda": ("base", 256), "cpu": ("tiny", 16)}[device.type]
    args.size, args.batch = args.size or defaults[0], args.batch or defaults[1]
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    facts = describe_machine(sys.argv)
    if device.type == "cuda":
        facts["device"] = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    steps, flops = {}, 0.0
    for objective in ("levljepa", "infonce"):
        step, flops = levl_step(args, device, objective)
        steps[f"levl {objective}"] = step
    steps["open_clip"] = open_clip_step(args, device)
    seconds = {name: seconds_per_step(step, device, args.warmup, args.repeats)
               for name, step in steps.items()}
    text = report(args, facts, device, seconds, flops)
    print("\n" + text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as results:
            results.write("\n" + text)


def report(args, facts: dict, device: torch.device, seconds: dict[str, float],
           flops: float) -> str:
    precision = "bf16 autocast" if device.type == "cuda" else f"fp32, {args.threads} threads"
    peak = peak_flops_for(facts["device"]) if device.type == "cuda" else None
    lines = [
        f"## Training step (bench/train.py), {facts['date']}", "",
        f"Device: {facts['device']}; {precision}; torch {torch.__version__}.",
        f"Command: `{facts['command']}`", "",
        f"size {args.size} (width/depth/heads {SIZES[args.size]}), {args.image_size} px, patch "
        f"{args.patch}, {CONTEXT} text tokens, batch {args.batch}; median of {args.repeats} "
        f"steps after {args.warmup} warm-up steps.", "",
        "| step | s/step | samples/s | samples/s vs open_clip |" + (" MFU |" if peak else ""),
        "|---|---|---|---|" + ("---|" if peak else ""),
    ]
    for name, value in seconds.items():
        row = (f"| {name} | {value:.3f} | {args.batch / value:.1f} | "
               f"{seconds['open_clip'] / value:.2f}× |")
        if peak:
            row += f" {flops * args.batch / value / peak:.1%} |" if name != "open_clip" else " |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), help="tiny on CPU, base on CUDA")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, help="16 on CPU, 256 on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--append", type=Path, help="append the markdown section to this file")
    return parser.parse_args()


if __name__ == "__main__":
    main()
