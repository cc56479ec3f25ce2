"""Fetch overhead: `levl-data fetch cc12m` vs a bare `img2dataset` call on the same URL list.

Both fetch the same loopback URLs (levl_data.testing_http.ImageServer, JPEGs generated before
timing) with the same img2dataset settings, as whole commands, alternating, `--repeats` times
each; samples/s is written samples over wall time, and the overhead is the ratio of the medians
(goal: <= 5%). levl's extra work (metadata to parquet, per-shard sha256, manifest, stats) and
its heavier CLI start are what the ratio measures.

    .venv/bin/python bench/fetch.py --urls 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_data.testing_http import ImageServer, jpeg_bytes  # noqa: E402

BIN = Path(sys.executable).parent


def main() -> None:
    args = _parse()
    describe_machine(sys.argv)
    with ImageServer() as server, tempfile.TemporaryDirectory(prefix="levl-bench-fetch-") as tmp:
        tsv = _url_list(server, Path(tmp), args)
        runs: dict[str, list[tuple]] = {"levl-data fetch": [], "img2dataset": []}
        for repeat in range(args.repeats):
            order = ["levl-data fetch", "img2dataset"][:: 1 if repeat % 2 == 0 else -1]
            for name in order:
                out = Path(tmp) / f"out-{repeat}-{name.split()[0]}"
                runs[name].append(_timed(name, tsv, out, args))
                shutil.rmtree(out)
    _report(runs, args)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--source-size", type=int, default=256, help="served JPEG side")
    parser.add_argument("--per-shard", type=int, default=500)
    return parser.parse_args()


def _url_list(server: ImageServer, tmp: Path, args) -> Path:
    """A CC12M-style TSV (with the `url caption` header both readers accept)."""
    lines = ["url\tcaption"]
    side = args.source_size
    for index in range(args.urls):
        jpeg_bytes(index, side, side)  # encode now, not while a fetch is timed
        lines.append(f"{server.url('ok', index, w=side, h=side)}\tphoto number {index}")
    tsv = tmp / "urls.tsv"
    tsv.write_text("\n".join(lines) + "\n", "utf-8")
    return tsv


def _command(name: str, tsv: Path, out: Path, args) -> list[str]:
    shared = {"image_size": args.image_size, "timeout": 10, "retries": 0}
    if name == "levl-data fetch":
        return [str(BIN / "levl-data"), "fetch", "cc12m", "--metadata", str(tsv), "--out", str(out),
                "--processes", str(args.processes), "--threads", str(args.threads),
                "--image-size", str(shared["image_size"]), "--timeout", str(shared["timeout"]),
                "--retries", "0", "--samples-per-shard", str(args.per_shard)]
    return [str(BIN / "img2dataset"), "--url_list", str(tsv), "--input_format", "tsv",
            "--url_col", "url", "--caption_col", "caption", "--output_format", "webdataset",
            "--output_folder", str(out), "--image_size", str(shared["image_size"]),
            "--resize_mode", "keep_ratio", "--encode_format", "jpg", "--encode_quality", "95",
            "--processes_count", str(args.processes), "--thread_count", str(args.threads),
            "--timeout", str(shared["timeout"]), "--retries", "0",
            "--number_sample_per_shard", str(args.per_shard), "--extract_exif", "False",
            "--enable_wandb", "False"]


def _timed(name: str, tsv: Path, out: Path, args) -> tuple[float, float, int]:
    """(wall s, CPU s of the command and every process it waited for, samples written)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = _command(name, tsv, out, args)
    before, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - before
    if done.returncode != 0:
        sys.exit(f"error: {shlex.join(command)} failed ({done.returncode}): {done.stderr[-500:]}")
    return seconds, cpu, _written(name, out)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _written(name: str, out: Path) -> int:
    if name == "levl-data fetch":
        return json.loads((out / "manifest.json").read_text())["num_samples"]
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))


def _report(runs: dict[str, list[tuple[float, float, int]]], args) -> None:
    """Wall time is what a user waits for; on a shared machine it swings with the neighbours'
    load, so CPU-seconds (all processes of the command) are reported beside it."""
    print(f"\n{args.urls} loopback URLs, {args.source_size} px JPEGs -> {args.image_size} px, "
          f"{args.processes} processes x {args.threads} threads, {args.repeats} repeats each")
    print("| command | written | median wall s | median samples/s | median CPU s "
          "| runs wall s | runs CPU s |")
    print("|---|---|---|---|---|---|---|")
    wall, cpu = {}, {}
    for name, results in runs.items():
        wall[name], cpu[name] = median(r[0] for r in results), median(r[1] for r in results)
        written = {r[2] for r in results}
        walls = ", ".join(f"{r[0]:.1f}" for r in results)
        cpus = ", ".join(f"{r[1]:.1f}" for r in results)
        print(f"| `{name}` | {'/'.join(map(str, sorted(written)))} | {wall[name]:.2f} | "
              f"{min(written) / wall[name]:.0f} | {cpu[name]:.1f} | {walls} | {cpus} |")
    levl, bare = "levl-data fetch", "img2dataset"
    print(f"\noverhead of levl-data fetch over bare img2dataset (goal <= +5%): "
          f"wall {wall[levl] / wall[bare] - 1:+.1%}, CPU {cpu[levl] / cpu[bare] - 1:+.1%}")


if __name__ == "__main__":
    main()
