"""One stored sample: scene → image, caption, metadata, and (eval splits) mask, background
variants and questions.

Each sample has its own generators derived from (seed, split, index), so a sample's content does
not depend on which process made it or on the other samples, and the eval-only extras draw from
their own stream (the image and caption of index i are the same with or without them).
"""

from __future__ import annotations

import zlib

import numpy as np

from levl_data.synth import vocab
from levl_data.synth.captions import make_caption
from levl_data.synth.codec import encode_jpeg, encode_png
from levl_data.synth.geometry import bbox
from levl_data.synth.qa import make_qa
from levl_data.synth.render import Foreground, composite, render_background, render_scene
from levl_data.synth.scene import Scene, sample_background, sample_scene


def sample_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """Generator of one sample's stream (0: scene + caption, 1: eval extras), from
    (seed, split, index, stream)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, stream])


def scene_metadata(scene: Scene) -> dict:
    """The per-sample json: label, objects (main first) with pixel boxes, background family."""
    return {
        "label": scene.label,
        "class_name": scene.main.shape,
        "objects": [
            {"shape": o.shape, "color": o.color, "size": o.size,
             "bbox": bbox(o, scene.image_size)}
            for o in scene.objects
        ],
        "background": scene.background.family,
        "typical_background": scene.background.family == vocab.TYPICAL_BACKGROUND[scene.main.shape],
    }


def background_variants(scene: Scene, fg: Foreground, rng: np.random.Generator
                        ) -> dict[str, tuple[str, np.ndarray]]:
    """mixed_same: a fresh background of the label's typical family; mixed_rand: the typical
    family of a random other class (so always a different family)."""
    shape = scene.main.shape
    others = [s for s in vocab.SHAPES if s != shape]
    rand_shape = others[int(rng.integers(len(others)))]
    out = {}
    for name, family in (("mixed_same", vocab.TYPICAL_BACKGROUND[shape]),
                         ("mixed_rand", vocab.TYPICAL_BACKGROUND[rand_shape])):
        bg = render_background(sample_background(rng, family), scene.image_size)
        out[name] = (family, composite(fg, bg))
    return out


def make_sample(seed: int, split: str, index: int, image_size: int, *, extras: bool) -> dict:
    """A writer-ready sample dict; `extras` adds mask.png, mixed_*.jpg and json qa (eval)."""
    rng = sample_rng(seed, split, index, 0)
    scene = sample_scene(rng, image_size)
    image, fg = render_scene(scene)
    meta = scene_metadata(scene)
    sample: dict = {"__key__": f"{split}_{index:07d}", "jpg": encode_jpeg(image),
                    "txt": make_caption(scene, rng)}
    if extras:
        extra_rng = sample_rng(seed, split, index, 1)
        variants = background_variants(scene, fg, extra_rng)
        sample["mask.png"] = encode_png(fg.mask)
        for name, (_, pixels) in variants.items():
            sample[f"{name}.jpg"] = encode_jpeg(pixels)
        meta["variants"] = {name: family for name, (family, _) in variants.items()}
        meta["qa"] = make_qa(scene, extra_rng)
    sample["json"] = meta
    return sample
