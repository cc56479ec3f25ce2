"""The demo over several seeds: is the trained encoder ahead of its random init by more than the
seed-to-seed spread on every headline metric?

Runs what `make demo` runs (levl-data synth tiny, levl-train run tiny_synthetic, levl-eval all)
once per seed — the training seed and the random baseline's seed both set to it, the synthetic
world fixed — and prints, per headline metric, every seed's trained and random figures, their
means, the trained run's spread (max - min) and the smallest trained-minus-random margin.

    .venv/bin/python bench/demo_seeds.py --seeds 0 1 2 --append bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

BIN = Path(sys.executable).parent
# (report protocol, metric key, label); lower is never better for these
METRICS = (("zeroshot", "top1", "zero-shot top-1"), ("linear", "top1", "linear top-1"),
           ("segmentation", "miou", "seg mIoU"), ("retrieval", "i2t_r1", "i2t R@1"),
           ("retrieval", "mean_recall", "retrieval mean R"))


def run(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def one_seed(data: Path, work: Path, seed: int, recipe: str,
             sets: tuple[str, ...] = ()) -> tuple[dict, dict, float]:
    """(trained, random) metric dicts of one seed and the train + eval wall seconds."""
    run_dir, eval_dir = work / f"run-seed{seed}", work / f"eval-seed{seed}"
    for path in (run_dir, eval_dir):
        subprocess.run(["rm", "-rf", str(path)], check=True)  # this bench's own earlier output
    seconds = run([str(BIN / "levl-train"), "run", recipe, "--data",
                   str(data / "train" / "manifest.json"), "--out", str(run_dir),
                   *[arg for item in (f"seed={seed}", *sets) for arg in ("--set", item)]])
    seconds += run([str(BIN / "levl-eval"), "all", "--ckpt", str(run_dir), "--data", str(data),
                    "--out", str(eval_dir), "--random-seed", str(seed)])
    report = json.loads((eval_dir / "report.json").read_text())
    trained = next(e for e in report["encoders"] if e["kind"] != "random")
    random = next(e for e in report["encoders"] if e["kind"] == "random")
    return _metrics(trained), _metrics(random), seconds


def _metrics(encoder: dict) -> dict[str, float]:
    return {label: 100 * encoder["protocols"][protocol][key] for protocol, key, label in METRICS}


def table(results: list[tuple[dict, dict, float]], seeds: list[int]) -> str:
    lines = [f"tiny_synthetic demo, seeds {seeds}; wall min per seed (train + eval): "
             + ", ".join(f"{s / 60:.1f}" for _, _, s in results), "",
             "| metric (%) | trained per seed | random per seed | trained mean | random mean | "
             "trained spread | smallest margin |", "|---|---|---|---|---|---|---|"]
    for _, _, label in METRICS:
        trained = [r[0][label] for r in results]
        random = [r[1][label] for r in results]
        margin = min(t - r for t, r in zip(trained, random, strict=True))
        lines.append(f"| {label} | {' '.join(f'{v:.2f}' for v in trained)} | "
                     f"{' '.join(f'{v:.2f}' for v in random)} | {mean(trained):.2f} | "
                     f"{mean(random):.2f} | {max(trained) - min(trained):.2f} | {margin:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/demo-seeds"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", default="tiny_synthetic")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="a variant of the recipe (levl-train --set)")
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    data = args.work / "data"
    if not (data / "train" / "manifest.json").exists():
        run([str(BIN / "levl-data"), "synth", "--out", str(data), "--size", "tiny", "--seed", "0"])
    results = []
    for seed in args.seeds:
        results.append(one_seed(data, args.work, seed, args.recipe, tuple(args.sets)))
        print(f"seed {seed}: trained {results[-1][0]} random {results[-1][1]}", flush=True)
    text = table(results, args.seeds)
    if args.sets:
        text += f"\n\nwith --set {' '.join(args.sets)}"
    print(text)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
