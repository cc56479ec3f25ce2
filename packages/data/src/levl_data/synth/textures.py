"""Texture fields for the 8 background families.

Each function maps normalised pixel-centre coordinates (u, v in [0, 1)) and a Background's
parameters to a blend field t in [0, 1]; the background is color_a*(1-t) + color_b*t. Keeping
the fields separate from colours lets one family look different every time (colours, period,
phase, angle) while staying recognisably the same family.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image

from levl_data.synth.scene import Background

Field = np.ndarray  # float32 [S, S] in [0, 1]


def _rotated(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return u * c + v * s, -u * s + v * c


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def stripes(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    d, _ = _rotated(u, v, bg.angle)
    return (_frac(d / bg.period + bg.phase) < 0.5).astype(np.float32)


def checker(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    a = np.floor(u / bg.period + bg.phase) + np.floor(v / bg.period + bg.phase * 1.7)
    return (a % 2).astype(np.float32)


def dots(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    row = np.floor(v / bg.period + bg.phase)
    fu = _frac(u / bg.period + bg.phase * 1.3 + 0.5 * (row % 2)) - 0.5
    fv = _frac(v / bg.period + bg.phase) - 0.5
    return (fu * fu + fv * fv < 0.3**2).astype(np.float32)


def waves(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    a, b = _rotated(u, v, bg.angle)
    wave = np.sin(2 * np.pi * (b / bg.period + 0.3 * np.sin(2 * np.pi * a / (2 * bg.period))
                               + bg.phase))
    return (0.5 + 0.5 * np.tanh(2.5 * wave)).astype(np.float32)


def noise(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    size = u.shape[0]
    cells = int(np.ceil(1 / bg.period)) + 1
    coarse = np.random.default_rng(bg.seed).random((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    t = np.asarray(img, dtype=np.float32)
    return np.clip((t - t.min()) / max(float(t.max() - t.min()), 1e-6), 0, 1)


def _line_width(u: np.ndarray) -> float:
    """About 1.5 px at any resolution, at least one pixel."""
    size = u.shape[0]
    return max(1.0, 1.5 * size / 64) / size


def grid(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    w = _line_width(u) / bg.period
    lines = (_frac(u / bg.period + bg.phase) < w) | (_frac(v / bg.period + bg.phase * 1.3) < w)
    return lines.astype(np.float32)


def gradient(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    d, _ = _rotated(u - 0.5, v - 0.5, bg.angle)
    return ((d - d.min()) / max(float(d.max() - d.min()), 1e-6)).astype(np.float32)


def bricks(u: np.ndarray, v: np.ndarray, bg: Background) -> Field:
    h = bg.period
    w = _line_width(u)
    rows = v / h + bg.phase
    shift = 0.5 * (np.floor(rows) % 2)
    cols = u / (2 * h) + shift + bg.phase * 0.7
    mortar = (_frac(rows) < w / h) | (_frac(cols) < w / (2 * h))
    return mortar.astype(np.float32)


FIELDS: dict[str, Callable[[np.ndarray, np.ndarray, Background], Field]] = {
    "stripes": stripes, "checker": checker, "dots": dots, "waves": waves,
    "noise": noise, "grid": grid, "gradient": gradient, "bricks": bricks,
}


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u across, v down), read-only because they are shared."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    v, u = np.meshgrid(coords, coords, indexing="ij")
    u.flags.writeable = v.flags.writeable = False
    return u, v


def texture_field(bg: Background, size: int) -> Field:
    """The blend field of `bg` at `size` x `size` pixels."""
    u, v = _grid(size)
    return FIELDS[bg.family](u, v, bg)
