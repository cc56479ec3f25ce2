"""Issue 14 §3's step changes on the CPU, each with and without, in one run.

Where a change has a CPU-visible effect it is timed both ways over the same data, interleaved,
medians over `--repeats`, in CPU time of the process and its loader workers (on 2 shared cores
a neighbour's load stretches wall time, much less CPU time):

  (e) uint8 images    the webdataset loader through one worker, the B/16 recipe's augmentation
                      (224 px) ending in uint8 pixels (levl) vs float32 normalised in the worker
                      (before); bytes per batch; `normalize` of a uint8 batch (the device's work)
  (h) sample seeds    the same loader in-process: `_sample_rng` (fork_rng + seed per sample,
                      levl) vs a nullcontext (before); and the context alone per sample
  (i) resume          a tiny_synthetic BatchStream resumed at --resume-batch of its epoch and its
                      first batch taken: with the saved reader position (levl: read past, no
                      decode) vs without (before: replay the epoch's batches); the batches agree;
                      with --ffcv also on the same world converted to an ffcv file; and
                      with the reader position at an epoch's end (an epoch of --resume-batch
                      batches, as the B/16 recipes' checkpoint-long epochs) vs inside the epoch
  (f) SIGReg slices   the host-side work the device generator removes: an E x S float64 draw
                      on the CPU at the B/16 recipe's E=256, S=4096
  (c, d) host work    what the host does per step that a per-step sync would expose on a GPU
                      (tokenising 256 captions) and the copy that pinning a batch costs
  (k) GPT-2 attention the B/16 text tower's forward + backward on 32 padded captions: run
                      causal with no mask (levl's CAUSAL_SDPA) vs transformers' `sdpa` given
                      the padding mask (before: a host read of the mask each step, SDPA's
                      masked path); the EOS features agree

(a), (b) and the rest of (c), (d), (f) have no CPU-visible effect (one process, no
communication, CPU kernels run synchronously, nothing to pin); for those the script prints the
arithmetic of the GPU effect from the B/16 recipe's shapes, under its own heading: nothing in
it ran on a GPU, and it is never mixed with the measured CPU figures.

    .venv/bin/python bench/step_changes.py --repeats 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from unittest import mock

import torch
from transformers import GPT2Model

sys.path.insert(0, str(Path(__file__).parent))
from loader import _jpegs, _write_tars  # noqa: E402
from machine import describe_machine  # noqa: E402

import levl_data.loader as levl_loader  # noqa: E402
from levl_data.convert import convert  # noqa: E402
from levl_data.loader import _Plan, build_loader  # noqa: E402
from levl_data.manifest import read_manifest  # noqa: E402
from levl_model.encoders import TextEncoder, gpt2_config, last_unmasked  # noqa: E402
from levl_model.model import build_model  # noqa: E402
from levl_model.preprocess import normalize, pixel_stats, train_transform  # noqa: E402
from levl_model.sigreg import draw_slice_directions  # noqa: E402
from levl_train.ds_config import BF16_REDUCED_MODULES  # noqa: E402
from levl_train.flops import train_flops_per_sample  # noqa: E402
from levl_train.recipes import tiny_synthetic, vit_b16_datacomp_l  # noqa: E402
from levl_train.setup import image_pipeline, load_tokenizer  # noqa: E402
from levl_train.stream import BatchStream  # noqa: E402

MB = 1e6
SYNTH = Path("bench-out/small-scale/synth/train/manifest.json")


def main() -> None:
    args = _parse()
    describe_machine(sys.argv)
    print(f"torch threads: {torch.get_num_threads()}")
    rows: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="levl-bench-steps-") as tmp:
        tars = _write_tars(Path(tmp) / "wds", _jpegs(args.images, 256), 256)
        if "e" in args.only:
            rows += uint8_images(tars, args)
        if "h" in args.only:
            rows += sample_seeds(tars, args)
    if "i" in args.only:
        rows += resume(args, read_manifest(args.manifest))
        rows += resume_at_epoch_end(args, read_manifest(args.manifest))
        if args.ffcv:
            with tempfile.TemporaryDirectory(prefix="levl-bench-ffcv-") as tmp:
                rows += resume(args, read_manifest(convert(args.manifest, Path(tmp) / "ffcv")))
    if "f" in args.only:
        rows += sigreg_draw(args)
    if "c" in args.only:
        rows += host_work(args)
    if "k" in args.only:
        rows += text_attention(args)
    _report(rows, args)
    if "gpu" in args.only:
        gpu_arithmetic(args)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--images", type=int, default=256, help="256-px JPEGs for (e) and (h)")
    parser.add_argument("--batch", type=int, default=64, help="loader batch for (e) and (h)")
    parser.add_argument("--manifest", type=Path, default=SYNTH,
                        help="a synthetic world's train manifest for (i) (`levl-data synth`)")
    parser.add_argument("--resume-batch", type=int, default=40)
    parser.add_argument("--ffcv", action="store_true",
                        help="(i) also on the manifest converted to ffcv (the `ffcv` extra)")
    parser.add_argument("--only", nargs="+", default=["e", "h", "i", "f", "c", "k", "gpu"],
                        choices=["e", "h", "i", "f", "c", "k", "gpu"])
    return parser.parse_args()


def _b16_transform(uint8: bool) -> Callable:
    """The B/16 recipe's augmentation (its data section), ending in uint8 or float32 pixels."""
    cfg = vit_b16_datacomp_l()
    data = cfg.data
    return train_transform(cfg.preprocess, (data.crop_scale_min, 1.0), data.color_jitter,
                           grayscale_p=data.grayscale_p, hue_jitter=data.hue_jitter, uint8=uint8)


def _interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """One warm-up of each, then `repeats` rounds in turn (a neighbour's load hits both)."""
    for run in runs.values():
        run()
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            values[name].append(run())
    return values


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (loader workers, once joined):
    on 2 shared cores a neighbour's load stretches wall time but not this."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _loader_pass(manifest: Path, transform: Callable, batch: int, workers: int,
                 nbytes: list[int] | None = None) -> Callable[[], float]:
    """samples per CPU-second of one pass, the workers' CPU time included."""
    def run() -> float:
        start = cpu_seconds()
        loader = build_loader(manifest, batch_size=batch, image_transform=transform,
                              shuffle_buffer=0, num_workers=workers, drop_last=False)
        count = 0
        for images in loader:
            count += len(images["image"])
            if nbytes is not None and not nbytes:
                nbytes.append(images["image"].nbytes)
        del loader, images
        gc.collect()
        return count / (cpu_seconds() - start)

    return run


def uint8_images(tars: Path, args) -> list:
    sizes: dict[str, list[int]] = {"uint8": [], "float32": []}
    rates = _interleaved({
        dtype: _loader_pass(tars, _b16_transform(dtype == "uint8"), args.batch, 1,
                            sizes[dtype])
        for dtype in ("uint8", "float32")}, args.repeats)
    preprocess = vit_b16_datacomp_l().preprocess
    stats = pixel_stats(preprocess)
    batch = torch.randint(0, 256, (args.batch, 3, 224, 224), dtype=torch.uint8)
    times = []
    for _ in range(max(args.repeats, 5) + 1):
        start = time.perf_counter()
        normalize(batch, preprocess, stats)
        times.append(time.perf_counter() - start)
    per_sample_ms = median(times[1:]) / args.batch * 1e3
    uint8, fp32 = median(rates["uint8"]), median(rates["float32"])
    return [
        ("(e) loader samples per CPU-s, 1 worker, 224 px", "uint8 / float32 normalised in the worker",
         uint8, fp32, _runs(rates["uint8"]) + " vs " + _runs(rates["float32"])),
        ("(e) bytes per batch of 64 (MB)", "uint8 / float32", sizes["uint8"][0] / MB,
         sizes["float32"][0] / MB, "the worker -> main process -> pin -> device copies"),
        ("(e) normalize on the CPU, ms per sample", "(the device's work; on a GPU ~µs)",
         per_sample_ms, float("nan"), f"{per_sample_ms * uint8 / 1e3:.0%} of a sample's loader "
         "time at the uint8 rate, moved from the worker into the step on a CPU run"),
    ]


def sample_seeds(tars: Path, args) -> list:
    transform = _b16_transform(True)
    with_seeds = _loader_pass(tars, transform, args.batch, 0)

    def without() -> float:
        with mock.patch.object(levl_loader, "_sample_rng",
                               lambda plan, worker, index: contextlib.nullcontext()):
            return with_seeds()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker (and bench/loader.py)
    try:
        rates = _interleaved({"with": with_seeds, "without": without}, args.repeats)
    finally:
        torch.set_num_threads(threads)
    plan = _Plan(manifest_path=Path(), shard_urls=(), shard_samples={}, shard_sha256={},
                 members={}, extra_members=(), image_transform=transform, seed=3)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for index in range(2000):
            with levl_loader._sample_rng(plan, 0, index):
                pass
        times.append((time.perf_counter() - start) / 2000 * 1e6)
    with_rate, without_rate = median(rates["with"]), median(rates["without"])
    return [
        ("(h) loader samples per CPU-s, in-process, 1 thread, 224 px", "_sample_rng / nullcontext",
         with_rate, without_rate, _runs(rates["with"]) + " vs " + _runs(rates["without"])),
        ("(h) _sample_rng alone, µs per sample", "", median(times), float("nan"),
         f"{median(times) * without_rate / 1e6:.2%} of a sample's loader time"),
    ]


def resume(args, manifest) -> list:
    """Resume a tiny_synthetic stream at batch `--resume-batch` both ways, first batch taken."""
    cfg = tiny_synthetic()
    reader, replay = (_Resume(cfg, manifest, args, how) for how in ("reader", "replay"))
    times = _interleaved({"reader": reader.run, "replay": replay.run}, max(1, args.repeats - 1))
    return [(f"(i) resume at batch {args.resume_batch} ({_position(cfg, args, manifest)}), CPU-s",
             "reader position / replay",
             median(times["reader"]), median(times["replay"]),
             f"{_runs(times['reader'], '.2f')} vs {_runs(times['replay'], '.2f')}; wall "
             f"{reader.wall():.2f} vs {replay.wall():.2f} s; first batch "
             f"{reader.agreement()} / {replay.agreement()} the uninterrupted run's")]


def resume_at_epoch_end(args, manifest) -> list:
    """The same resume with the reader position, where the position is an epoch's end (an
    epoch of --resume-batch batches: the B/16 recipes' checkpoint-long epochs) against where it
    is inside the manifest-long epoch."""
    cfg = tiny_synthetic()
    aligned = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, epoch_samples=args.resume_batch * cfg.data.batch_size))
    inside, end = (_Resume(config, manifest, args, "reader") for config in (cfg, aligned))
    times = _interleaved({"end": end.run, "inside": inside.run}, max(1, args.repeats - 1))
    return [(f"(i) resume at batch {args.resume_batch} ({_position(cfg, args, manifest)}) "
             "with the reader position, CPU-s",
             "at an epoch's end / inside the epoch",
             median(times["end"]), median(times["inside"]),
             f"{_runs(times['end'], '.2f')} vs {_runs(times['inside'], '.2f')}; wall "
             f"{end.wall():.2f} vs {inside.wall():.2f} s; first batch {end.agreement()} / "
             f"{inside.agreement()} the uninterrupted run's")]


def _position(cfg, args, manifest) -> str:
    return (f"{args.resume_batch * cfg.data.batch_size} samples, {cfg.data.views} views + "
            f"{cfg.data.local_views} local, {manifest.data['format']}, "
            f"{cfg.data.num_workers} worker{'s' if cfg.data.num_workers != 1 else ''}")


class _Resume:
    """A tiny_synthetic-like stream run to batch --resume-batch once; `run` then resumes a new
    one there (with the reader position, or by replay) and takes its first batch, returning CPU
    seconds (workers included)."""

    def __init__(self, cfg, manifest, args, how: str) -> None:
        self.cfg, self.manifest, self.how = cfg, manifest, how
        self.transform = image_pipeline(cfg)
        ran = self.stream()
        for _ in range(args.resume_batch):
            next(ran)
        self.state, self.reader = ran.state_dict(), ran.rank_state()
        self.expected = next(ran)["key"]
        self.walls: list[float] = []
        self.firsts: list[bool] = []

    def stream(self) -> BatchStream:
        return BatchStream(self.manifest, self.cfg.data, seed=self.cfg.seed,
                           micro_batch=self.cfg.data.batch_size, rank=0, world_size=1,
                           transform=self.transform)

    def run(self) -> float:
        gc.collect()
        fresh = self.stream()
        start, wall = cpu_seconds(), time.perf_counter()
        fresh.load_state_dict(self.state, self.reader if self.how == "reader" else None)
        keys = next(fresh)["key"]
        self.walls.append(time.perf_counter() - wall)
        del fresh
        gc.collect()
        self.firsts.append(keys == self.expected)
        return cpu_seconds() - start

    def wall(self) -> float:
        return median(self.walls[1:] or self.walls)  # after the warm-up

    def agreement(self) -> str:
        return "equal to" if all(self.firsts) else "DIFFERS from"


def sigreg_draw(args) -> list:
    objective = vit_b16_datacomp_l().objective
    dim, slices = 256, objective.num_slices
    times = []
    for step in range(args.repeats + 1):
        start = time.perf_counter()
        draw_slice_directions(dim, slices, step=step)
        times.append((time.perf_counter() - start) * 1e3)
    return [(f"(f) host draw of E x S = {dim} x {slices} slices, ms", "(removed from the host "
             "on a GPU)", median(times[1:]), float("nan"),
             f"then a {dim * slices * 4 / MB:.1f} MB fp32 host-to-device copy each step")]


def host_work(args) -> list:
    cfg = vit_b16_datacomp_l()
    tokenizer = load_tokenizer(cfg.tokenizer, max_length=cfg.model.text.max_length)
    captions = [f"a photo of {i} red squares left of a blue circle on a wooden table"
                for i in range(256)]
    batch = torch.randint(0, 256, (256, 3, 224, 224), dtype=torch.uint8)
    tokenize, copy8, copy32 = [], [], []
    as_float = batch.float()
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        tokenizer(captions)
        tokenize.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        batch.clone()
        copy8.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        as_float.clone()
        copy32.append((time.perf_counter() - start) * 1e3)
    return [
        (f"(c) tokenise 256 captions ({cfg.tokenizer} tokenizer), ms", "(host work per step)",
         median(tokenize[1:]), float("nan"), "hidden behind the GPU only without a per-step sync"),
        ("(d) host copy of a 256-image batch (pin_memory's copy), ms", "uint8 / float32",
         median(copy8[1:]), median(copy32[1:]), f"{batch.nbytes / MB:.1f} / "
         f"{as_float.nbytes / MB:.1f} MB"),
    ]


def text_attention(args) -> list:
    cfg = vit_b16_datacomp_l()
    tokenizer = load_tokenizer(cfg.tokenizer, max_length=cfg.model.text.max_length)
    ids, mask = tokenizer([" ".join(["a photo of a red square"] * (1 + i % 12))
                           for i in range(32)])
    torch.manual_seed(0)
    causal = TextEncoder(cfg.model.text)
    masked_config = gpt2_config(cfg.model.text)
    masked_config._attn_implementation = "sdpa"  # transformers' own: it prepares the mask
    masked = GPT2Model(masked_config)
    masked.load_state_dict(causal.transformer.state_dict())
    features = {}

    def step(name: str) -> float:
        start = time.process_time()
        if name == "causal":
            eos = causal(ids, mask)
        else:
            hidden = masked(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            eos = last_unmasked(hidden, mask)
        eos.square().sum().backward()
        features[name] = eos.detach()
        return (time.process_time() - start) * 1e3

    times = _interleaved({"causal": lambda: step("causal"), "masked": lambda: step("masked")},
                         args.repeats)
    agree = torch.allclose(features["causal"], features["masked"], rtol=1e-5, atol=1e-5)
    return [("(k) B/16 text tower fwd + bwd, 32 padded captions, CPU ms",
             "causal, no mask / sdpa with the mask", median(times["causal"]),
             median(times["masked"]), f"{_runs(times['causal'])} / {_runs(times['masked'])}; "
             f"EOS features {'agree' if agree else 'DIFFER'}")]


def _runs(values: list[float], spec: str = ".0f") -> str:
    return ", ".join(format(value, spec) for value in values)


def _report(rows: list, args) -> None:
    print(f"\nmeasured on the CPU, medians of {args.repeats} (after a warm-up)")
    print("| change | with / without | with | without | ratio | runs, notes |")
    print("|---|---|---|---|---|---|")
    for name, what, with_value, without_value, notes in rows:
        ratio = with_value / without_value if without_value == without_value else float("nan")
        shown_without = "" if without_value != without_value else f"{without_value:.3g}"
        shown_ratio = "" if ratio != ratio else f"{ratio:.2f}"
        print(f"| {name} | {what} | {with_value:.3g} | {shown_without} | {shown_ratio} "
              f"| {notes} |")


# Assumptions of the GPU arithmetic (stated, not measured): an H100/H200 SXM's bf16 dense peak,
# the MFU goal of issue 14, 400 Gb/s of inter-node network per GPU, PCIe 5 host-to-device.
PEAK_FLOPS, MFU, NET_BYTES_S, PINNED_BYTES_S, PAGEABLE_BYTES_S = 989.4e12, 0.45, 50e9, 25e9, 10e9
GPUS, BATCH_PER_GPU, TEXT_TOKENS = 16, 256, 77


def gpu_arithmetic(args) -> None:
    """(a)-(d), (f) from the B/16 recipe's shapes; nothing here ran on a GPU."""
    cfg = vit_b16_datacomp_l()
    with torch.device("meta"):
        model = build_model(cfg.model, seed=0)
    reduced_classes = tuple(_resolve(name) for name in BF16_REDUCED_MODULES)
    total = sum(p.numel() for p in model.parameters())
    bf16 = sum(p.numel() for module in model.modules() if type(module) in reduced_classes
               for p in module.parameters(recurse=False))
    flops = float(train_flops_per_sample(cfg.model, cfg.preprocess.size, float(TEXT_TOKENS)))
    step_s = flops * BATCH_PER_GPU / (PEAK_FLOPS * MFU)
    share = (GPUS - 1) / GPUS  # a ring reduce-scatter / all-gather sends this share per GPU
    grads_fp32 = total * 4
    grads_now = bf16 * 2 + (total - bf16) * 4
    params_gather = total * 4  # ZeRO-2 all-gathers the updated fp32 weights
    print("\nexpected on a GPU: arithmetic from the B/16 recipe's shapes (nothing here ran on a "
          "GPU)")
    print(f"assumed: {PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 dense (H100/H200 SXM) at "
          f"{MFU:.0%} MFU, {GPUS} GPUs x {BATCH_PER_GPU}, {NET_BYTES_S / 1e9:.0f} GB/s network "
          f"per GPU, host-to-device {PINNED_BYTES_S / 1e9:.0f} GB/s pinned / "
          f"{PAGEABLE_BYTES_S / 1e9:.0f} GB/s pageable")
    print(f"model: {total / 1e6:.1f}M parameters, {bf16 / 1e6:.1f}M ({bf16 / total:.2%}) in "
          f"modules whose gradients DeepSpeed reduces in bf16; {flops / 1e9:.0f} GFLOP per "
          f"sample (fwd+bwd, {TEXT_TOKENS} tokens) -> compute {step_s * 1e3:.0f} ms per step")

    def net_ms(nbytes: float) -> float:
        return nbytes * share / NET_BYTES_S * 1e3

    print(f"(a) gradient reduce-scatter per step: fp32 {grads_fp32 / MB:.0f} MB "
          f"({net_ms(grads_fp32):.1f} ms) -> {grads_now / MB:.0f} MB ({net_ms(grads_now):.1f} ms);"
          f" + fp32 weight all-gather {params_gather / MB:.0f} MB ({net_ms(params_gather):.1f} "
          f"ms): step traffic {(grads_now + params_gather) / (grads_fp32 + params_gather):.2f}x")
    backward_s = step_s * 2 / 3  # the backward is ~2/3 of a step's FLOPs
    for bucket in (2e8, 5e7):
        buckets = -(-total // int(bucket))
        exposed = {name: _exposed_ms(total, bucket, size, backward_s, share)
                   for name, size in (("fp32", 4), ("bf16", grads_now / total))}
        buffers = 2 * bucket * (2 + 4) / MB  # overlap_comm's double buffer per comm dtype
        print(f"(b) reduce buckets of {bucket:.0e}: {buckets} buckets, the first sent after "
              f"{min(bucket / total, 1.0):.0%} of the backward; reduction left after the "
              f"backward: {exposed['fp32']:.1f} ms fp32 / {exposed['bf16']:.1f} ms bf16; "
              f"bucket buffers up to {buffers:.0f} MB")
    images = BATCH_PER_GPU * 3 * cfg.preprocess.size ** 2
    for dtype, size in (("uint8", 1), ("float32", 4)):
        nbytes = images * size
        print(f"(d, e) {dtype} batch of {BATCH_PER_GPU}: {nbytes / MB:.1f} MB -> host-to-device "
              f"{nbytes / PINNED_BYTES_S * 1e3:.1f} ms pinned (async, overlaps compute) / "
              f"{nbytes / PAGEABLE_BYTES_S * 1e3:.1f} ms pageable (the host waits)")
    slices = 256 * cfg.objective.num_slices * 4
    print(f"(f) slices: {slices / MB:.1f} MB host-to-device per step before "
          f"({slices / PAGEABLE_BYTES_S * 1e3:.2f} ms pageable, a stream sync), none now")
    print(f"(c) host syncs: before >= 1 per step (loss/grad-norm .item(), wall-clock timing); "
          f"now 0 between log steps; at a log step (every log_every={cfg.log_every}) the "
          "non-finite flag, the losses and the interval's CUDA events are read (4 reductions)")


def _exposed_ms(total: int, bucket: float, bytes_per_element: float, backward_s: float,
                share: float) -> float:
    """Reduction time left after the backward ends: gradients become ready uniformly over the
    backward, a bucket is sent when full (the rest at the end), one bucket on the wire at a time
    (overlap_comm)."""
    done, wire_free, ready = 0.0, 0.0, 0
    while ready < total:
        elements = min(bucket, total - ready)
        ready += elements
        start = max(wire_free, backward_s * ready / total)
        wire_free = start + elements * bytes_per_element * share / NET_BYTES_S
        done = wire_free
    return max(done - backward_s, 0.0) * 1e3


def _resolve(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


if __name__ == "__main__":
    main()
