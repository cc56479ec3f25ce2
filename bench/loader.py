"""Loader throughput per core: decoded + augmented 224-px samples/s, levl's loaders vs bare PIL.

The same JPEGs (`--images` of `--side` px, smooth random content) are read five ways, each with
one process, one torch thread and one ffcv decode thread; a pass's rate per core is samples per
CPU-second of the process (ffcv's decode thread runs beside the main thread). Every path gets a
warm-up pass (ffcv JIT-compiles its pipeline on the first one), then passes interleave; medians:

  PIL loop (the practical limit): open, RGB, `pil_augment` (random resized crop 224 + flip)
  levl webdataset loader: tars -> PIL decode -> `pil_augment`, or torchvision v2's crop + flip
  levl ffcv loader, PIL augment: ffcv decodes whole images (libjpeg-turbo), then `pil_augment`
  levl ffcv loader, ffcv pipeline: RandomResizedCropRGBImageDecoder + flip, JIT-compiled

    .venv/bin/python bench/loader.py --images 512 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np
import PIL.Image
import torch
from torchvision.transforms import RandomResizedCrop, v2

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_data.convert import convert  # noqa: E402
from levl_data.loader import build_loader  # noqa: E402
from levl_data.writer import ShardSetWriter  # noqa: E402

SIZE = 224


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    describe_machine(sys.argv)
    with tempfile.TemporaryDirectory(prefix="levl-bench-loader-") as tmp:
        jpegs = _jpegs(args.images, args.side)
        tars = _write_tars(Path(tmp) / "wds", jpegs, args.side)
        beton = convert(tars, Path(tmp) / "ffcv", command="bench/loader.py")
        paths = {
            "PIL loop (limit)": _pil_pass(jpegs),
            "levl webdataset loader, PIL augment": _levl_pass(tars, args.batch, pil_augment),
            "levl webdataset loader, torchvision v2 augment": _levl_pass(
                tars, args.batch, _v2_augment()),
            "levl ffcv loader, PIL augment": _levl_pass(beton, args.batch, pil_augment),
            "levl ffcv loader, ffcv pipeline": _levl_pass(
                beton, args.batch, pil_augment, _ffcv_pipeline()),
        }
        rates = {name: [] for name in paths}
        for run in paths.values():
            run()  # warm-up: page cache, JIT
        for _ in range(args.repeats):
            for name, run in paths.items():
                wall, cpu = time.perf_counter(), time.process_time()
                count = run()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rates[name].append((count / cpu, count / wall))
    _report(rates, args)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--side", type=int, default=256, help="stored JPEG side (fetch default)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def _jpegs(count: int, side: int) -> list[bytes]:
    """Photo-like JPEGs: smooth random colour fields (noise would not compress like photos)."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(coarse).resize((side, side), PIL.Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        images.append(buffer.getvalue())
    return images


def _write_tars(out: Path, jpegs: list[bytes], side: int) -> Path:
    with ShardSetWriter(out, samples_per_shard=256) as writer:
        for index, jpeg in enumerate(jpegs):
            writer.write({"__key__": f"{index:06d}", "jpg": jpeg, "txt": f"image {index}",
                          "json": {"uid": f"{index:032x}"}})
        return writer.finish(
            name="bench-loader", split="train",
            source={"kind": "custom", "metadata": [], "subset": {"rule": "all", "sha256": None}},
            image={"policy": "fixed", "size": side, "encoding": "jpeg"},
        )


def pil_augment(image: PIL.Image.Image) -> torch.Tensor:
    """Random resized crop (torchvision's box draw, one PIL resize of the box) + flip."""
    top, left, height, width = RandomResizedCrop.get_params(
        image, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    image = image.resize((SIZE, SIZE), PIL.Image.BILINEAR,
                         box=(left, top, left + width, top + height))
    if random.random() < 0.5:
        image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1)


def _v2_augment() -> Callable:
    return v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(SIZE, antialias=True),
                       v2.RandomHorizontalFlip()])


def _pil_pass(jpegs: list[bytes]) -> Callable[[], int]:
    """The limit: decode to RGB and augment, nothing else (no tar, no batching)."""
    def run() -> int:
        for jpeg in jpegs:
            with PIL.Image.open(io.BytesIO(jpeg)) as opened:
                pil_augment(opened.convert("RGB"))
        return len(jpegs)

    return run


def _levl_pass(manifest: Path, batch: int, augment: Callable, pipeline=None) -> Callable[[], int]:
    loader = build_loader(manifest, batch_size=batch, image_transform=augment,
                          shuffle_buffer=0, num_workers=0, drop_last=False,
                          ffcv_image_pipeline=pipeline)

    def run() -> int:
        count = 0
        for images in loader:
            count += len(images["image"])
        return count

    return run


def _ffcv_pipeline() -> list:
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage

    return [RandomResizedCropRGBImageDecoder((SIZE, SIZE)), RandomHorizontalFlip(), ToTensor(),
            ToTorchImage()]


def _report(rates: dict[str, list[tuple[float, float]]], args) -> None:
    """Per core = samples per CPU-second of this process (all its threads): ffcv decodes in its
    own thread while the main thread collates, so wall-clock rate alone would flatter it."""
    limit = median(cpu for cpu, _ in rates["PIL loop (limit)"])
    print(f"\n{args.images} JPEGs of {args.side} px -> random resized crop {SIZE} + flip, "
          f"batch {args.batch}, median of {args.repeats} passes")
    print("| path | samples/s per core (CPU time) | vs PIL loop | samples/s wall "
          "| passes (per core) |")
    print("|---|---|---|---|---|")
    for name, values in rates.items():
        per_core = median(cpu for cpu, _ in values)
        wall = median(rate for _, rate in values)
        text = ", ".join(f"{cpu:.0f}" for cpu, _ in values)
        print(f"| {name} | {per_core:.0f} | {per_core / limit:.2f} | {wall:.0f} | {text} |")


if __name__ == "__main__":
    main()
