"""Evaluation in bounded memory: extract and probe a split whose features are larger than the
memory the process may use.

--protocol segmentation (default): linear segmentation (levl_eval's protocol, 1 epoch) on an
ADE20K-layout dataset written here (--images training images at 224 px through a one-layer
ViT-S/16: 196 x 384 float16 tokens, 147 KB an image). --protocol linear: the linear probe
(--epochs, default 1) on --images random CLS features of width 768 in float32 (3 KB an image;
ImageNet's 1.28M are 3.9 GB), written here once as a raw file, in CLASSES_LINEAR noisy clusters.
Each measurement runs in its own child process, in turn:

  mapped   levl as it is: tokens and label maps (CLS features) go to disk batch by batch during
           extraction and are read back memory-mapped (levl_eval.features.spill), no cache
  in RAM   the reference: the same features copied into the process's own memory after
           extraction (what the protocol held before spilling; the old extraction also
           concatenated a list, so it peaked at twice this, and the old linear probe added two
           whole standardised copies of its train split)

The parent samples each child's /proc/<pid>/status every 10 ms and prints the medians over
--repeats of the peak RssAnon (the process's own memory: heap and tensors, what a memory limit
must hold) and of the peak VmRSS (plus file-backed pages of the mapped tokens being read, which
the kernel drops under pressure), their ratio mapped / in RAM, and both runs' mIoU or top-1 (they
must be equal). With --limit-mb (needs a writable cgroup memory controller, v1 or v2, e.g. root) every
child runs under that memory limit: the in-RAM reference is expected to be killed by it.

    .venv/bin/python bench/eval_memory.py --images 6000 --limit-mb 700 [--append bench/RESULTS.md]
    .venv/bin/python bench/eval_memory.py --protocol linear --images 300000 --limit-mb 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEADS, IMAGE, PATCH = 384, 6, 224, 16
FRAME_WH = (96, 64)  # each image and label at this original size; resized to 224 for the encoder
CLASSES = 8
CLS_WIDTH, CLASSES_LINEAR = 768, 10  # few classes: the scored [N, C] logits stay small


def write_dataset(root: Path, train: int, val: int) -> Path:
    """ADEChallengeData2016 with two classes per image, left and right halves, colour-coded."""
    base = root / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(CLASSES, 3), dtype=np.uint8)
    for split, prefix, count in (("training", "ADE_train", train), ("validation", "ADE_val", val)):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            left, right = rng.integers(0, CLASSES, size=2)
            labels = np.zeros(FRAME_WH[::-1], dtype=np.uint8)
            labels[:, : FRAME_WH[0] // 2], labels[:, FRAME_WH[0] // 2:] = left + 1, right + 1
            pixels = palette[labels - 1] + rng.integers(0, 30, size=(*FRAME_WH[::-1], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "images" / split / f"{prefix}_{i:08d}.jpg", quality=90)
            Image.fromarray(labels, mode="L").save(base / "annotations" / split / f"{prefix}_{i:08d}.png")
    return root


def write_checkpoint(ckpt_dir: Path) -> Path:
    """A random one-layer ViT-S/16 at 224 px (tokens as wide as ViT-S's, extraction cheap)."""
    from levl_eval.testing.worlds import micro_config
    from levl_model.checkpoint import build_metadata, save_checkpoint
    from levl_model.config import ObjectiveConfig, VisionConfig
    from levl_model.model import build_model
    from levl_model.objectives import build_objective
    from levl_model.preprocess import Preprocess
    from levl_model.tokenizer import load_tokenizer

    cfg = dataclasses.replace(micro_config(IMAGE), vision=VisionConfig(WIDTH, 1, HEADS, PATCH, IMAGE))
    objective = ObjectiveConfig(num_slices=16)
    metadata = build_metadata(
        model_config=cfg, objective_config=objective,
        tokenizer_spec=load_tokenizer(max_length=cfg.text.max_length).spec(),
        preprocess=Preprocess(size=IMAGE), step=0, samples_seen=0, manifest_fingerprint=None,
        recipe={"recipe": "bench_eval_memory"}, code_version="bench")
    return save_checkpoint(ckpt_dir, model=build_model(cfg, seed=0),
                           objective=build_objective(objective), metadata=metadata)


def prepare(work: Path, train: int, val: int) -> tuple[Path, Path]:
    """The dataset and checkpoint under `work`, written once per size."""
    datasets, ckpt = work / f"datasets-{train}-{val}", work / "ckpt"
    if not (datasets / "done").is_file():
        write_dataset(datasets, train, val)
        (datasets / "done").write_text("ok")
    if not (ckpt / "model.safetensors").is_file():
        write_checkpoint(ckpt)
    return datasets, ckpt


def write_cls_features(root: Path, train: int, val: int, chunk: int = 8192) -> Path:
    """root/{train,val}_ND.bin (float32, CLS_WIDTH wide) and root/{train,val}_N.npy labels:
    noisy class centres, written a chunk at a time (the file may exceed the memory limit)."""
    import torch

    from levl_eval.features.spill import ArrayWriter

    root.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    centres_CD = torch.randn(CLASSES_LINEAR, CLS_WIDTH, generator=generator)
    for name, count in (("train", train), ("val", val)):
        writer, labels = ArrayWriter(root / f"{name}_ND.bin", torch.float32), []
        for start in range(0, count, chunk):
            labels_B = torch.randint(0, CLASSES_LINEAR, (min(chunk, count - start),), generator=generator)
            writer.append(centres_CD[labels_B] + 25.0 * torch.randn(len(labels_B), CLS_WIDTH, generator=generator))
            labels.append(labels_B)
        writer.finish()
        np.save(root / f"{name}_N.npy", torch.cat(labels).numpy())
    return root


def child_linear(mode: str, features: Path, epochs: int) -> None:
    """One measurement: the linear probe on CLS features mapped from their file, or copied into
    RAM (as extraction held them before spilling)."""
    import torch

    from levl_eval.features.spill import fix_mmap_threshold, map_array
    from levl_eval.protocols.linear.protocol import LinearProbeSettings, linear_probe_metrics

    fix_mmap_threshold()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    splits = []
    for name in ("train", "val"):
        labels_N = torch.from_numpy(np.load(features / f"{name}_N.npy"))
        cls_ND = map_array(features / f"{name}_ND.bin", torch.float32, (len(labels_N), CLS_WIDTH))
        splits += [cls_ND.clone() if mode == "ram" else cls_ND, labels_N]
    start = time.perf_counter()
    result = linear_probe_metrics(*splits, CLASSES_LINEAR, LinearProbeSettings(epochs=epochs))
    print(json.dumps({"score": result["top1"], "train_bytes": splits[0].numel() * 4,
                      "seconds": time.perf_counter() - start}))


def child(mode: str, datasets: Path, ckpt: Path, batch: int) -> None:
    """One measurement: the segmentation protocol, features mapped or copied into RAM."""
    import torch

    from levl_eval.datasets import read_ade20k
    from levl_eval.encoder import load_frozen_checkpoint
    from levl_eval.features.spill import fix_mmap_threshold
    from levl_eval.protocols.segmentation.protocol import LinearSegmentation, SegmentationSettings

    fix_mmap_threshold()  # as levl-eval's entry point does
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    encoder = load_frozen_checkpoint(ckpt, device="cpu", batch_size=batch)[0]
    extracted = encoder.patch_features
    token_bytes = []

    def features(*args, **kwargs):
        patches = extracted(*args, **kwargs)
        token_bytes.append(patches.tokens_NLD.numel() * patches.tokens_NLD.element_size())
        if mode == "ram":
            patches = dataclasses.replace(
                patches, tokens_NLD=patches.tokens_NLD.clone(), masks_NHW=patches.masks_NHW.clone(),
                frame_maps=tuple(frame.clone() for frame in patches.frame_maps))
        return patches

    encoder.patch_features = features
    start = time.perf_counter()
    result = LinearSegmentation(SegmentationSettings(epochs=1)).run(encoder, read_ade20k(datasets))
    print(json.dumps({"score": result["miou"], "train_bytes": token_bytes[0],
                      "seconds": time.perf_counter() - start}))


def memory_cgroup(limit_mb: int) -> Path | None:
    """A new memory cgroup limited to `limit_mb`: v2 where its memory controller is on, else v1."""
    v2 = Path("/sys/fs/cgroup")
    candidates = [(v2 / "memory", "memory.limit_in_bytes")]
    if (v2 / "cgroup.controllers").is_file() and "memory" in (v2 / "cgroup.controllers").read_text().split():
        candidates.insert(0, (v2, "memory.max"))
    for base, limit_file in candidates:
        group = base / f"levl-bench-{os.getpid()}-{time.monotonic_ns()}"
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / limit_file).write_text(str(limit_mb * 2**20))
            return group
        except OSError:
            group.rmdir()
    return None


def sample_peaks(process: subprocess.Popen) -> dict[str, int]:
    """Peak RssAnon and VmRSS (kB) of a running process, sampled until it exits."""
    peaks = {"RssAnon": 0, "VmRSS": 0}
    while process.poll() is None:
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in peaks:
                    peaks[key] = max(peaks[key], int(value.split()[0]))
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    return peaks


def measure(mode: str, child_args: list[str], group: Path | None) -> dict:
    """Run one child (inside `group` when given) and return its peaks and its printed result."""
    def enter_group() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    process = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, *child_args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=enter_group)
    peaks = sample_peaks(process)
    out, err = process.communicate()
    if process.returncode != 0:
        reason = "killed (the memory limit)" if process.returncode in (-9, 137) else f"exit {process.returncode}"
        return {"failed": reason, "stderr": err.strip().splitlines()[-1:] if err.strip() else [], **peaks}
    return {**json.loads(out.strip().splitlines()[-1]), **peaks}


def summary(mode: str, runs: list[dict]) -> dict:
    done = [run for run in runs if "failed" not in run]
    row = {"mode": mode, "completed": f"{len(done)}/{len(runs)}",
           "peak_anon_mb": median(run["RssAnon"] for run in runs) / 1024,
           "peak_rss_mb": median(run["VmRSS"] for run in runs) / 1024}
    if done:
        row["score"] = done[0]["score"]
        row["seconds"] = median(run["seconds"] for run in done)
        row["train_mb"] = done[0]["train_bytes"] / 2**20
    failures = sorted({run["failed"] for run in runs if "failed" in run})
    return {**row, **({"failures": failures} if failures else {})}


def run_inputs(args: argparse.Namespace) -> list[str]:
    """The child's inputs, written under --work once per size: CLS features (linear), or a
    dataset and a checkpoint (segmentation)."""
    if args.protocol == "linear":
        features = args.work / f"cls-{args.images}-{args.val}"
        if not (features / "done").is_file():
            write_cls_features(features, args.images, args.val)
            (features / "done").write_text("ok")
        return ["--datasets", str(features), "--epochs", str(args.epochs)]
    datasets, ckpt = prepare(args.work, args.images, args.val)
    return ["--datasets", str(datasets), "--ckpt", str(ckpt), "--batch", str(args.batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("segmentation", "linear"), default="segmentation")
    parser.add_argument("--images", type=int, default=6000, help="training images")
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32, help="extraction batch size")
    parser.add_argument("--epochs", type=int, default=1, help="linear probe epochs")
    parser.add_argument("--limit-mb", type=int, default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "bench-out" / "eval-memory")
    parser.add_argument("--append", type=Path, default=None)
    parser.add_argument("--child", choices=("mapped", "ram"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--datasets", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.protocol == "linear":
        return child_linear(args.child, args.datasets, args.epochs)
    if args.child:
        return child(args.child, args.datasets, args.ckpt, args.batch)

    facts = describe_machine(sys.argv)
    child_args = ["--protocol", args.protocol, *run_inputs(args)]
    runs: dict[str, list[dict]] = {"mapped": [], "ram": []}
    for _ in range(args.repeats):
        for mode in runs:  # interleaved: a change in the machine's load hits both alike
            cgroup = memory_cgroup(args.limit_mb) if args.limit_mb else None
            if args.limit_mb and cgroup is None:
                sys.exit("error: --limit-mb needs a writable cgroup memory controller (run as root)")
            try:
                runs[mode].append(measure(mode, child_args, cgroup))
            finally:
                if cgroup:
                    cgroup.rmdir()
    rows = [summary("mapped (levl)", runs["mapped"]), summary("in RAM (reference)", runs["ram"])]
    linear = args.protocol == "linear"
    lines = [f"limit: {args.limit_mb} MB (cgroup)" if args.limit_mb else "limit: none",
             f"linear probe ({args.epochs} epoch(s)), {args.images} train + {args.val} val CLS "
             f"features of width {CLS_WIDTH}, {CLASSES_LINEAR} classes" if linear else
             f"{args.images} train + {args.val} val images, ViT width {WIDTH}, 224 px, patch {PATCH}, "
             f"extraction batch {args.batch}",
             f"| run | completed | peak RssAnon MB | peak VmRSS MB | train {'CLS' if linear else 'tokens'} MB "
             f"| {'top-1' if linear else 'mIoU'} | s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['mode']} | {row['completed']} | {row['peak_anon_mb']:.0f} | "
                     f"{row['peak_rss_mb']:.0f} | {row.get('train_mb', float('nan')):.0f} | "
                     f"{row.get('score', float('nan')):.2f} | {row.get('seconds', float('nan')):.0f} |"
                     + (f" {', '.join(row['failures'])}" if "failures" in row else ""))
    if all("failures" not in row for row in rows):
        lines.append(f"peak RssAnon ratio mapped / in RAM: {rows[0]['peak_anon_mb'] / rows[1]['peak_anon_mb']:.2f}")
    else:  # a killed run's peak is where the limit stopped it, not what it needed
        lines.append("peak RssAnon ratio mapped / in RAM: not measured (a run did not complete)")
    print("\n".join(lines))
    if args.append:
        with args.append.open("a") as out:
            out.write(f"\n## eval_memory.py, {facts['date']}\n\n{facts['device']}; `{facts['command']}`\n\n")
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
