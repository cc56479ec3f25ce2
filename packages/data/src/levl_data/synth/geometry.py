"""Outlines of the 8 shapes, fitted to an object's square box.

Every outline is normalised to fill its box (the larger extent touches the box after rotation),
so an object's `side` is its real pixel extent and a "large" object is large whatever its shape.
Circles and rings are drawn as ellipses by the renderer; they have no polygon here.
"""

from __future__ import annotations

import numpy as np

from levl_data.synth.scene import SceneObject


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    k = np.arange(2 * points)
    r = np.where(k % 2 == 0, 1.0, inner)
    a = -np.pi / 2 + k * np.pi / points
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1),
                     (-a, a), (-1, a), (-1, -a), (-a, -a)], dtype=float)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


UNIT_OUTLINES: dict[str, np.ndarray] = {
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float),
    "triangle": np.array([(0, -1), (0.95, 0.8), (-0.95, 0.8)], dtype=float),
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
    "diamond": np.array([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)], dtype=float),
}
ELLIPSE_SHAPES = ("circle", "ring")


def polygon(obj: SceneObject) -> np.ndarray:
    """[K, 2] pixel coordinates of a polygonal object's outline, fitted to its box."""
    pts = UNIT_OUTLINES[obj.shape]
    a = np.deg2rad(obj.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = pts @ rot.T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = (obj.side / 2) / (max(hi - lo) / 2)
    pts = (pts - (lo + hi) / 2) * scale
    return pts + np.array([obj.cx, obj.cy])


def ring_width(obj: SceneObject) -> int:
    """Stroke width of a ring: thick enough to see at 64 px, thin enough to keep the hole."""
    return max(2, round(0.2 * obj.side))


def bbox(obj: SceneObject, image_size: int) -> list[int]:
    """Integer [x0, y0, x1, y1] pixel box of the drawn object, clipped to the image."""
    if obj.shape in ELLIPSE_SHAPES:
        x0, y0, x1, y1 = obj.box
    else:
        pts = polygon(obj)
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    clip = lambda z: int(min(max(z, 0), image_size))  # noqa: E731
    return [clip(np.floor(x0)), clip(np.floor(y0)), clip(np.ceil(x1)), clip(np.ceil(y1))]
