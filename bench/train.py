"""Training-step throughput: levl's steps against open_clip's CLIP step, in the same run.

For each size in --sizes, four steps on the same random batch (five on the CPU), each a
median over --repeats after --warmup steps. On the CPU all are built first and timed in turns
(one step of each per round: the ratios do not move with the machine's drift); on CUDA each is
built and measured on its own (so each peak memory is its own):

  levl levljepa   levl_train's TorchEngine.step: timm ViT + GPT-2 forward, projection and
                  predictor heads, SIGReg (METHOD.md's 4096 slices), backward, AdamW
  levl infonce    the same engine and towers with the InfoNCE baseline (no predictors)
  levl siglip     the same with the SigLIP baseline (no predictors)
  levl levljepa, small heads
                  on the CPU: LeVLJEPA with the heads and SIGReg slices levl's CPU recipes
                  train (micro_synthetic, tiny_synthetic: E=64, 256-wide MLPs, 256 slices)
  open_clip       the reference the ratios divide by. On the CPU: open_clip.CLIP with towers of
                  the same width / depth / heads / patch / context. On CUDA at size base:
                  open_clip's own ViT-B-16 (open_clip.create_model: its text tower is width 512,
                  so the FLOP-normalised ratio is the fair one). ClipLoss, backward, AdamW.

Below each table: SIGReg's share of the LeVLJEPA step (its two terms timed alone, forward and
backward, on embeddings of the step's shape, over the whole step's time).

samples/s = batch / step time. CPU: fp32, --sizes micro tiny at 224 px by default. CUDA (when a
GPU is present): bf16 autocast for all, --sizes base (ViT-B/16 + GPT-2 width 768) at batch 256
by default, plus MFU (levl_train.flops' count over the device's bf16 peak), samples/s per FLOP
against open_clip, and peak memory (torch.cuda.max_memory_allocated). The last line,
`summary: ...`, is for bench/gpu_check.sh. Needs open_clip_torch (`make bench`).

    .venv/bin/python bench/train.py --repeats 5 [--append bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_model.config import (  # noqa: E402
    SIZES,
    ObjectiveConfig,
    TextConfig,
    VisionConfig,
    model_config,
)
from levl_model.objectives import build_objective  # noqa: E402
from levl_train.config import with_objective_model  # noqa: E402
from levl_train.distributed import DistEnv  # noqa: E402
from levl_train.engine import TorchEngine  # noqa: E402
from levl_train.flops import (  # noqa: E402
    TRAIN_OVER_FORWARD,
    peak_flops_for,
    text_forward_flops,
    train_flops_per_sample,
    vision_forward_flops,
)
from levl_train.recipes import micro_synthetic  # noqa: E402
from levl_train.setup import build_module  # noqa: E402

CONTEXT, VOCAB = 77, 50257
OBJECTIVES = ("levljepa", "infonce", "siglip")
REFERENCE = "open_clip"
# The heads levl's CPU recipes train (micro_synthetic and tiny_synthetic alike: E=64, 256-wide
# MLPs, 256 SIGReg slices), timed on each size's towers next to METHOD.md's B/16 heads.
SMALL_HEADS_ROW = "levl levljepa, small heads"
PACKAGES = ("torch", "timm", "transformers", "open_clip_torch")  # what the steps run on
Step = Callable[[], None]


@dataclasses.dataclass
class Measured:
    seconds: float  # median s/step
    flops: float  # training FLOPs per sample
    peak_bytes: int | None  # CUDA: torch.cuda.max_memory_allocated over build + steps


def levl_step(args, size: str, device: torch.device, objective: str,
              small_heads: bool = False) -> tuple[Step, float]:
    """A closure running one levl optimizer step, and levl's training FLOPs per sample. With
    `small_heads`, the heads and SIGReg slices of levl's CPU recipes (micro_synthetic's)
    instead of METHOD.md's (E=256, 2048-wide MLPs, 4096 slices)."""
    base = micro_synthetic()
    model, objective_cfg = (model_config(size, image_size=args.image_size, patch_size=args.patch),
                            ObjectiveConfig(name=objective))
    if small_heads:
        model = dataclasses.replace(model, heads=base.model.heads)
        objective_cfg = dataclasses.replace(objective_cfg, num_slices=base.objective.num_slices)
    cfg = with_objective_model(dataclasses.replace(
        base, model=model, objective=objective_cfg,
        device=device.type, precision="bf16" if device.type == "cuda" else "fp32",
    ))
    engine = TorchEngine(build_module(cfg, DistEnv(), device), cfg)
    batch, steps = [random_batch(args, device, VOCAB)], itertools.count()
    return (lambda: engine.step(batch, next(steps))), \
        train_flops_per_sample(cfg.model, args.image_size, float(CONTEXT))


def open_clip_model(args, size: str, device: torch.device):
    """open_clip's own ViT-B-16 for the CUDA comparison at size base (how users pretrain
    CLIP-B/16 today); elsewhere a CLIP whose towers have levl's shape."""
    import open_clip

    if device.type == "cuda" and size == "base":
        return open_clip.create_model("ViT-B-16"), open_clip.get_model_config("ViT-B-16")
    width, depth, heads = SIZES[size]
    config = {"embed_dim": 256,
              "vision_cfg": {"layers": depth, "width": width, "head_width": width // heads,
                             "patch_size": args.patch, "image_size": args.image_size},
              "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": width,
                           "heads": heads, "layers": depth}}
    return open_clip.CLIP(embed_dim=config["embed_dim"],
                          vision_cfg=open_clip.CLIPVisionCfg(**config["vision_cfg"]),
                          text_cfg=open_clip.CLIPTextCfg(**config["text_cfg"])), config


def open_clip_flops(config: dict, image_size: int) -> float:
    """open_clip's training FLOPs per sample by levl_train.flops' formulas (the same count as
    levl's rows, so MFU and the per-FLOP ratio compare like with like)."""
    vision, text = config["vision_cfg"], config["text_cfg"]
    vision_cfg = VisionConfig(vision["width"], vision["layers"],
                              vision["width"] // vision.get("head_width", 64),
                              patch_size=vision["patch_size"], image_size=image_size)
    text_cfg = TextConfig(text["width"], text["layers"], text["heads"])
    projections = 2 * (vision["width"] + text["width"]) * config["embed_dim"]
    return TRAIN_OVER_FORWARD * (vision_forward_flops(vision_cfg, image_size)
                                 + text_forward_flops(text_cfg, float(CONTEXT)) + projections)


def open_clip_step(args, size: str, device: torch.device) -> tuple[Step, float]:
    """A closure running one open_clip CLIP optimizer step, and its FLOPs per sample."""
    from open_clip.loss import ClipLoss

    model, config = open_clip_model(args, size, device)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = ClipLoss()
    images, ids, _ = random_batch(args, device, config["text_cfg"].get("vocab_size", 49408))

    def step() -> None:
        with autocast(device):
            image_features, text_features, scale = model(images, ids)[:3]
            loss = loss_fn(image_features, text_features, scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, open_clip_flops(config, args.image_size)


def random_batch(args, device: torch.device, vocab: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator)
    ids = torch.randint(0, vocab, (args.batch, CONTEXT), generator=generator)
    return images.to(device), ids.to(device), torch.ones_like(ids).to(device)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sigreg_step(args, size: str, device: torch.device) -> Step:
    """LeVLJEPA's two SIGReg terms alone, forward and backward, on z_v and z_t of the step's
    shape: the numerator of SIGReg's share of the step."""
    objective = build_objective(ObjectiveConfig(name="levljepa")).to(device)
    embed = model_config(size).heads.embed_dim
    out = {name: torch.randn(args.batch, embed, device=device, requires_grad=True)
           for name in ("z_v", "z_t")}
    # steps of its own: not the levl steps' (whose slice directions SIGReg memoises), so each
    # call draws its directions as a training step does
    steps = itertools.count(10**9)

    def step() -> None:
        with autocast(device):
            sigreg_v, sigreg_t = objective.sigreg_terms(out, next(steps))
        (sigreg_v + sigreg_t).backward()

    return step


def measure(make: Callable[[], tuple[Step, float]], device: torch.device, args) -> Measured:
    """Build a step, time it, and free it before the next is built."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, flops = make()
    seconds = seconds_per_step(step, device, args.warmup, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Measured(seconds, flops, peak)


def seconds_per_step(step: Step, device: torch.device, warmup: int, repeats: int) -> float:
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


def measure_size(args, size: str, device: torch.device) -> tuple[dict[str, Measured], float]:
    """Every step of one size, and SIGReg's seconds per step."""
    makers: dict[str, Callable[[], tuple[Step, float]]] = {
        REFERENCE: lambda: open_clip_step(args, size, device),
        **{f"levl {objective}": lambda objective=objective: levl_step(args, size, device, objective)
           for objective in OBJECTIVES}}
    if device.type == "cpu":
        makers[SMALL_HEADS_ROW] = lambda: levl_step(args, size, device, "levljepa",
                                                    small_heads=True)
    makers["sigreg"] = lambda: (sigreg_step(args, size, device), 0.0)
    if device.type == "cpu":
        rows = measure_in_turns(makers, args)
    else:
        rows = {name: measure(make, device, args) for name, make in makers.items()}
    return rows, rows.pop("sigreg").seconds


def measure_in_turns(makers: dict[str, Callable[[], tuple[Step, float]]],
                     args) -> dict[str, Measured]:
    """CPU: every step built first, then timed in turns, so a drift of the machine's speed
    (another job, the clock) lands on all of them alike and the ratios hold (run one after
    another, open_clip's median moved by 20 % between two runs here). Each turn runs its step
    once untimed before the timed one: straight after another model's step, the first step
    pays for caches and allocator state the other left (open_clip's most: ~20 %)."""
    built = {name: make() for name, make in makers.items()}
    times: dict[str, list[float]] = {name: [] for name in built}
    for round_ in range(args.warmup + args.repeats):
        for name, (step, _) in built.items():
            step()
            start = time.perf_counter()
            step()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return {name: Measured(median(times[name]), flops, None)
            for name, (_, flops) in built.items()}


def main() -> None:
    args = parse()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    defaults = {"cuda": (["base"], 256), "cpu": (["micro", "tiny"], 16)}[device.type]
    args.sizes, args.batch = args.sizes or defaults[0], args.batch or defaults[1]
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    facts = describe_machine(sys.argv)
    if device.type == "cuda":
        facts["device"] = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    peak = peak_flops_for(facts["device"]) if device.type == "cuda" else None
    sections, summaries = [header(args, facts, device)], []
    for size in args.sizes:
        rows, sigreg = measure_size(args, size, device)
        sections.append(table(args, size, device, rows, sigreg, peak))
        summaries.append(summary(args, size, rows, sigreg, peak))
    text = "\n".join(sections)
    print("\n" + text)
    print("\n".join(summaries))
    if args.append:
        with open(args.append, "a", encoding="utf-8") as results:
            results.write("\n" + text)


def header(args, facts: dict, device: torch.device) -> str:
    precision = "bf16 autocast" if device.type == "cuda" else f"fp32, {args.threads} threads"
    versions = ", ".join(f"{name} {package_version(name)}" for name in PACKAGES)
    return "\n".join([
        f"## Training step (bench/train.py), {facts['date']}", "",
        f"Device: {facts['device']}; {precision}; {versions}.",
        f"Command: `{facts['command']}`", "",
        f"{args.image_size} px, patch {args.patch}, {CONTEXT} text tokens, batch {args.batch}; "
        + (f"timed in turns: median of {args.repeats} turns after {args.warmup}, each turn one "
           "untimed and one timed step of each." if device.type == "cpu" else
           f"median of {args.repeats} steps after {args.warmup} warm-up steps."), ""])


def table(args, size: str, device: torch.device, rows: dict[str, Measured], sigreg: float,
          peak: float | None) -> str:
    """One size's markdown table: each step's time and samples/s against open_clip's, its
    training FLOPs per sample against open_clip's and so its speed per FLOP (LeVLJEPA's
    projection and predictor MLPs are work open_clip's step does not do); on CUDA also MFU and
    peak memory."""
    ref = rows[REFERENCE]
    cuda = device.type == "cuda"
    lines = [f"Size {size} (width/depth/heads {SIZES[size]}):", "",
             "| step | s/step | samples/s | samples/s vs open_clip | FLOPs/sample vs open_clip "
             "| per FLOP vs open_clip |" + (" MFU | peak memory |" if cuda else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if cuda else "")]
    for name in [*(name for name in rows if name != REFERENCE), REFERENCE]:
        row = rows[name]
        per_flop = (row.flops / row.seconds) / (ref.flops / ref.seconds)
        line = (f"| {name} | {row.seconds:.3f} | {args.batch / row.seconds:.1f} | "
                f"{ref.seconds / row.seconds:.2f}× | {row.flops / ref.flops:.2f}× | "
                f"{per_flop:.2f}× |")
        if cuda:
            mfu = f"{row.flops * args.batch / row.seconds / peak:.1%}" if peak else "-"
            line += f" {mfu} | {row.peak_bytes / 2**30:.1f} GiB |"
        lines.append(line)
    share = sigreg / rows["levl levljepa"].seconds
    lines += ["", f"SIGReg (both terms, forward + backward, timed alone): {sigreg * 1e3:.1f} ms, "
                  f"{share:.1%} of the LeVLJEPA step.", ""]
    return "\n".join(lines)


def summary(args, size: str, rows: dict[str, Measured], sigreg: float,
            peak: float | None) -> str:
    """One line of LeVLJEPA's figures for bench/gpu_check.sh."""
    levl, ref = rows["levl levljepa"], rows[REFERENCE]
    parts = [f"summary: size={size}", f"levljepa={args.batch / levl.seconds:.1f} samples/s",
             f"vs_open_clip={ref.seconds / levl.seconds:.2f}x"]
    per_flop = (levl.flops / levl.seconds) / (ref.flops / ref.seconds)
    parts.append(f"per_flop_vs_open_clip={per_flop:.2f}x")
    if peak:
        parts.append(f"mfu={levl.flops * args.batch / levl.seconds / peak:.1%}")
    if levl.peak_bytes is not None:
        parts.append(f"peak={levl.peak_bytes / 2**30:.1f}GiB")
    parts.append(f"sigreg_share={sigreg / levl.seconds:.1%}")
    return " ".join(parts)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", "--size", nargs="+", choices=sorted(SIZES),
                        help="micro tiny on CPU, base on CUDA")
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
