"""Evaluation cost: frozen-feature extraction images/s and probe/head training time.

Every figure is a median over --repeats, measured beside a reference in the same run:

  forward        levl's encode_image (ViT + CLS/patch readouts + projection head) on one batch,
                 against a bare timm VisionTransformer of the same shape (forward_features)
  extraction     levl_eval's extract_split_features over a synthetic-world split (shard read,
                 JPEG decode, eval transform, forward), and the same split from the feature cache
  probes         linear / MLP / attentive probe and the segmentation head with their report
                 settings, on random features of the micro model's width

CPU: a micro model (width 64, depth 2) at 64 px with patch 8, one torch thread unless --threads.
CUDA (only when a GPU is present): ViT-B/16 at 224 px, bf16 autocast, against timm's ViT-B/16.

    .venv/bin/python bench/eval.py --repeats 5 [--append bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from statistics import median

import torch
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_data.manifest import read_manifest  # noqa: E402
from levl_eval.data.splits import EvalSplit  # noqa: E402
from levl_eval.encoder import FrozenEncoder  # noqa: E402
from levl_eval.features.cache import FeatureCache  # noqa: E402
from levl_eval.features.types import PatchFeatures  # noqa: E402
from levl_eval.probes import (  # noqa: E402
    AttentiveProbeSettings,
    MLPProbeSettings,
    attentive_probe_metrics,
    mlp_probe_metrics,
)
from levl_eval.protocols.linear.protocol import LinearProbeSettings, linear_probe_metrics  # noqa: E402
from levl_eval.protocols.segmentation.protocol import SegmentationSettings, train_segmentation_head  # noqa: E402
from levl_eval.standardize import TokenStandardizer  # noqa: E402
from levl_eval.testing.worlds import write_synth_eval_world  # noqa: E402
from levl_model.config import model_config  # noqa: E402
from levl_model.model import build_model  # noqa: E402
from levl_model.preprocess import Preprocess  # noqa: E402
from levl_model.tokenizer import load_tokenizer  # noqa: E402

CLASSES = 8


def timed(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of `run` (CUDA work included: synchronised before each clock read)."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - start)
    return median(seconds)


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns within every repeat so that a change in
    the shared machine's load hits them alike (their ratio is the figure to trust)."""
    for run in runs.values():
        run()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            seconds[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in seconds.items()}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bare_timm(size: str, image_size: int, patch: int) -> VisionTransformer:
    """timm's ViT with the same width/depth/heads as levl's encoder: the reference forward."""
    cfg = model_config(size, image_size=image_size, patch_size=patch).vision
    return VisionTransformer(img_size=image_size, patch_size=patch, embed_dim=cfg.width,
                             depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
                             num_classes=0)


@torch.no_grad()
def forward_rates(size: str, image_size: int, patch: int, batch: int, device: str, repeats: int,
                  dtype: torch.dtype | None) -> dict[str, float]:
    """images/s of levl's encode_image and of the bare timm ViT on one identical batch."""
    levl = build_model(model_config(size, image_size=image_size, patch_size=patch)).to(device).eval()
    timm_vit = bare_timm(size, image_size, patch).to(device).eval()
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None)

    def run(forward: Callable) -> Callable[[], object]:
        def once() -> object:
            with autocast:
                return forward(images)
        return once

    seconds = interleaved({"levl encode_image (ViT + projection head)": run(levl.encode_image),
                           "levl vision tower only": run(levl.vision.forward_tokens),
                           "bare timm ViT (reference)": run(timm_vit.forward_features)}, repeats)
    return {name: batch / value for name, value in seconds.items()}


def extraction_rates(repeats: int, per_split: int, batch: int) -> dict[str, float]:
    """images/s of extract_split_features on a synthetic split, fresh and from the cache."""
    with tempfile.TemporaryDirectory(prefix="levl-bench-eval-") as tmp:
        world = write_synth_eval_world(Path(tmp) / "world", per_split=per_split, image_size=64)
        split = EvalSplit("eval-test", read_manifest(world / "eval-test" / "manifest.json"))
        cfg = model_config("micro", image_size=64, patch_size=8)

        def encoder(cache: FeatureCache | None) -> FrozenEncoder:
            return FrozenEncoder("micro", build_model(cfg).eval(), Preprocess(size=64),
                                 load_tokenizer(max_length=cfg.text.max_length), batch_size=batch,
                                 info={"path": None}, feature_cache=cache)

        fresh, cached = encoder(None), encoder(FeatureCache(Path(tmp) / "cache"))
        cached.image_features(split)  # fills the cache

        def features(source: FrozenEncoder) -> Callable[[], object]:
            def once() -> object:
                source._images.clear()  # forget the in-memory copy: extract or read the disk
                return source.image_features(split)
            return once

        seconds = interleaved({"extract (read + decode + forward)": features(fresh),
                               "from the feature cache": features(cached)}, repeats)
        return {name: per_split / value for name, value in seconds.items()}


def probe_seconds(repeats: int, count: int, width: int, tokens: int) -> dict[str, float]:
    """Training (+ scoring) seconds of each probe with its report settings on random features."""
    generator = torch.Generator().manual_seed(0)
    labels_N = torch.randint(0, CLASSES, (count,), generator=generator)
    cls_ND = torch.randn(count, width, generator=generator)
    tokens_NLD = torch.randn(count, tokens, width, generator=generator).half()
    side = int(tokens**0.5)
    patches = PatchFeatures(tokens_NLD=tokens_NLD[: count // 8], grid_hw=(side, side),
                            masks_NHW=torch.randint(0, CLASSES, (count // 8, 8 * side, 8 * side),
                                                    generator=generator, dtype=torch.uint8))
    standardize = TokenStandardizer.fit(patches.tokens_NLD, 1e-8)
    runs = {
        f"linear probe ({LinearProbeSettings().epochs} epochs)": lambda: linear_probe_metrics(
            cls_ND, labels_N, cls_ND, labels_N, CLASSES, LinearProbeSettings()),
        f"MLP probe ({MLPProbeSettings().epochs} epochs)": lambda: mlp_probe_metrics(
            cls_ND, labels_N, cls_ND, labels_N, CLASSES, MLPProbeSettings()),
        f"attentive probe ({AttentiveProbeSettings().epochs} epochs, {tokens} tokens)":
            lambda: attentive_probe_metrics(tokens_NLD, labels_N, tokens_NLD, labels_N, CLASSES,
                                            AttentiveProbeSettings()),
        f"segmentation head ({SegmentationSettings().epochs} epochs, {count // 8} images)":
            lambda: train_segmentation_head(patches, standardize, CLASSES, SegmentationSettings(), "cpu"),
    }
    return {name: timed(run, repeats, warmup=0) for name, run in runs.items()}


def markdown(facts: dict, sections: dict[str, dict[str, float]], units: dict[str, str]) -> str:
    lines = [f"## Evaluation (bench/eval.py), {facts['date']}", "",
             f"Device: {facts['device']}; torch threads {torch.get_num_threads()}; "
             f"python {facts['python']}, torch {facts['versions']['torch']}, "
             f"timm {metadata.version('timm')}, levl-eval {metadata.version('levl-eval')}.",
             f"Command: `{facts['command']}`", ""]
    for title, values in sections.items():
        lines += [f"| {title} | {units[title]} |", "|---|---|"]
        lines += [f"| {name} | {value:.0f} |" if value >= 100 else f"| {name} | {value:.3g} |"
                  for name, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    facts = describe_machine(sys.argv)
    sections = {
        "micro forward, 64 px, batch 64": forward_rates("micro", 64, 8, 64, "cpu", args.repeats, None),
        f"extraction, micro, {args.images} synthetic images": extraction_rates(args.repeats, args.images, 64),
        "probe training (+ scoring), micro width 64": probe_seconds(args.repeats, args.probe_samples, 64, 64),
    }
    units = dict.fromkeys(sections, "images/s")
    units["probe training (+ scoring), micro width 64"] = "seconds"
    if torch.cuda.is_available():
        facts["device"] = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
        title = "ViT-B/16 forward, 224 px, batch 256, bf16"
        sections[title] = forward_rates("base", 224, 16, 256, "cuda", args.repeats, torch.bfloat16)
        units[title] = "images/s"
    levl, tower, ref = sections["micro forward, 64 px, batch 64"].values()
    text = markdown(facts, sections, units) + (
        f"Same-run ratios (micro, CPU): encode_image / bare timm {levl / ref:.2f}, "
        f"vision tower / bare timm {tower / ref:.2f}.\n")
    print("\n" + text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as results:
            results.write("\n" + text)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=256, help="synthetic images to extract")
    parser.add_argument("--probe-samples", type=int, default=4096)
    parser.add_argument("--append", type=Path, help="append the markdown section to this file")
    return parser.parse_args()


if __name__ == "__main__":
    main()
