"""Tiny real shard sets for tests (this package's and the packages downstream of it).

The images are solid colours or gradients whose caption names the colour and whose per-sample
json carries the colour index as `label`, so a test can check that image, caption and label of
a batch belong together. `bad` samples carry corrupt image bytes to exercise skip-and-count.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image

from levl_data.writer import ShardSetWriter

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 40),
    "cyan": (40, 210, 220),
    "magenta": (210, 40, 200),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
CORRUPT_IMAGE = b"\xff\xd8\xff\xe0" + b"this is not a jpeg" * 4


def make_tiny_shards(
    out_dir: str | Path,
    n: int = 16,
    image_size: int = 32,
    bad: int = 0,
    samples_per_shard: int = 8,
) -> Path:
    """Write `n` samples (keys `000000`, ...) into `out_dir`; returns the manifest path.

    Sample i has colour `COLORS[i % 8]`, label `i % 8`, and is a solid fill for even i, a
    horizontal gradient for odd i. The `bad` corrupt samples are spread evenly over the set.
    """
    if not 0 <= bad <= n:
        raise ValueError(f"bad must be in [0, n={n}], got {bad}")
    bad_indices = bad_sample_indices(n, bad)
    names = list(COLORS)
    with ShardSetWriter(out_dir, samples_per_shard=samples_per_shard) as writer:
        for index in range(n):
            name = names[index % len(names)]
            kind = "square" if index % 2 == 0 else "gradient"
            image = CORRUPT_IMAGE if index in bad_indices else _jpeg(name, kind, image_size)
            writer.write(
                {
                    "__key__": f"{index:06d}",
                    "jpg": image,
                    "txt": f"a {name} {kind}",
                    "json": {"label": index % len(names)},
                }
            )
        return writer.finish(
            name="levl-testing-tiny",
            split="train",
            source={
                "kind": "synthetic",
                "metadata": [],
                "subset": {"rule": "all", "sha256": None},
                "params": {"generator": "levl_data.testing", "n": n, "bad": bad},
            },
            image={"policy": "fixed", "size": image_size, "encoding": "jpeg"},
            labels={"classes": names, "prompts": ["a {} square.", "a {} gradient."]},
        )


def bad_sample_indices(n: int, bad: int) -> set[int]:
    """Which sample indices make_tiny_shards corrupts (spread evenly, deterministic)."""
    return {index * n // bad for index in range(bad)} if bad else set()


def _jpeg(color_name: str, kind: str, size: int) -> bytes:
    rgb = np.array(COLORS[color_name], dtype=np.float32)
    pixels = np.broadcast_to(rgb, (size, size, 3)).copy()
    if kind == "gradient":
        ramp = np.linspace(0.35, 1.0, size, dtype=np.float32)
        pixels *= ramp[None, :, None]
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
