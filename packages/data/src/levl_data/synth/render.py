"""Render a scene: textured background, the shapes, and the per-pixel class mask.

The foreground (shape colours + mask) is drawn once without anti-aliasing, so every pixel is
either exactly an object's colour or exactly background. Compositing through the mask then lets
the same foreground sit on another background with identical foreground pixels — what the
ImageNet-9 mixed_same / mixed_rand variants need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from levl_data.synth import vocab
from levl_data.synth.geometry import ELLIPSE_SHAPES, polygon, ring_width
from levl_data.synth.scene import Background, Scene, SceneObject
from levl_data.synth.textures import texture_field


@dataclass(frozen=True)
class Foreground:
    rgb: np.ndarray  # uint8 [S, S, 3], zeros where mask == 0
    mask: np.ndarray  # uint8 [S, S], 0 background, 1 + class index


def render_background(bg: Background, size: int) -> np.ndarray:
    """uint8 [S, S, 3] textured background."""
    t = texture_field(bg, size)[..., None]
    a = np.asarray(bg.color_a, dtype=np.float32)
    b = np.asarray(bg.color_b, dtype=np.float32)
    return np.clip(np.rint(a * (1 - t) + b * t), 0, 255).astype(np.uint8)


def _draw(draws: tuple[ImageDraw.ImageDraw, ...], obj: SceneObject, fills: tuple) -> None:
    """Draw `obj` identically on each canvas (colour image, mask) with its own fill."""
    points = None if obj.shape in ELLIPSE_SHAPES else [tuple(p) for p in polygon(obj).tolist()]
    for draw, fill in zip(draws, fills, strict=True):
        if obj.shape == "circle":
            draw.ellipse(obj.box, fill=fill)
        elif obj.shape == "ring":
            draw.ellipse(obj.box, outline=fill, width=ring_width(obj))
        else:
            draw.polygon(points, fill=fill)


def render_foreground(scene: Scene) -> Foreground:
    """Draw distractors first and the main object last, so the main object is never occluded."""
    size = scene.image_size
    rgb = Image.new("RGB", (size, size), (0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    draws = (ImageDraw.Draw(rgb), ImageDraw.Draw(mask))
    for obj in reversed(scene.objects):
        _draw(draws, obj, (obj.rgb, 1 + vocab.label_of(obj.shape)))
    mask_arr = np.asarray(mask, dtype=np.uint8).copy()
    rgb_arr = np.asarray(rgb, dtype=np.uint8).copy()
    rgb_arr[mask_arr == 0] = 0
    return Foreground(rgb=rgb_arr, mask=mask_arr)


def composite(fg: Foreground, background: np.ndarray) -> np.ndarray:
    """Foreground pixels where the mask is set, the background elsewhere."""
    return np.where(fg.mask[..., None] > 0, fg.rgb, background).astype(np.uint8)


def render_scene(scene: Scene) -> tuple[np.ndarray, Foreground]:
    """(image uint8 [S, S, 3], foreground) of a scene on its own background."""
    fg = render_foreground(scene)
    return composite(fg, render_background(scene.background, scene.image_size)), fg
