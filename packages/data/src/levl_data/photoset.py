"""A small real-photo image-caption set (`levl-data photos`), built offline from the photos that
scikit-image ships in `skimage/data` (no network: only the bundled files are used).

Each sample is either a composite, an object cut out of a photo (cat face, coffee cup, rocket,
...) pasted at one of five positions on a random crop of a texture photo (brick, grass, ...),
captioned with object, background and position; or (25 %) a random crop of the object's own
photo ("a photo of a cat."). Three caption factors that are visible in the pixels give a
contrastive model cross-modal structure it can learn in a few hundred CPU steps, and the
object labels give a zero-shot task (`classes.json`, manifest `labels`).

Samples are pure functions of (seed, split, index) and the source files, whose sha256 is
checked, so the same seed gives byte-identical shards. Validation differs from train by its
random stream, by the crop region of every background photo (right 40 % vs left 60 %) and by
the coin and face instances; the single-instance object photos are shared by both splits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from levl_data.errors import DataError
from levl_data.synth.codec import encode_jpeg
from levl_data.writer import ShardSetWriter

PHOTOSET_VERSION = 1
INSTALL_HINT = "pip install 'levl-data[photos]'"
SPLITS: tuple[str, ...] = ("train", "val")
SAMPLES_PER_SHARD = 1000
PHOTO_PROBABILITY = 0.25
VAL_BAND = 0.4  # the right 40 % of each background photo is only ever cropped for validation
MIN_SIZE, MAX_SIZE = 32, 512

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels


@dataclass(frozen=True)
class ObjectSpec:
    """One object class: where its cut-outs come from and how their alpha mask is made."""

    name: str
    phrase: str
    file: str
    boxes: tuple[Box, ...]
    # ellipse | squircle (a rounder box: keeps the wheels) | not_blue (rocket against the night
    # sky) | dark (black silhouette on white, pasted in a tone that contrasts with the background)
    mask: str
    scale: tuple[float, float] = (0.3, 0.5)  # longer side, as a fraction of the image side


@dataclass(frozen=True)
class BackgroundSpec:
    """One background photo and the side range (source pixels) of its square crops."""

    name: str
    phrase: str
    file: str
    side: tuple[int, int]


# Individual coins of coins.png (tight boxes of the thresholded coins, plus a 2 px margin).
COIN_BOXES: tuple[Box, ...] = tuple(
    (x0 - 2, y0 - 2, x1 + 2, y1 + 2) for x0, y0, x1, y1 in (
        (305, 16, 365, 72), (131, 28, 179, 74), (192, 30, 240, 73), (21, 33, 67, 75),
        (255, 34, 297, 72), (81, 39, 120, 74), (245, 96, 296, 144), (25, 104, 67, 146),
        (186, 105, 227, 144), (317, 105, 356, 145), (84, 107, 122, 145), (134, 110, 174, 145),
        (315, 156, 380, 218), (189, 170, 237, 216), (253, 172, 297, 216), (80, 175, 124, 217),
        (25, 178, 63, 217), (135, 179, 174, 217), (18, 233, 75, 288), (144, 236, 199, 288),
        (276, 240, 326, 288), (220, 241, 269, 288), (92, 245, 136, 287), (336, 248, 381, 289),
    )
)
LFW_FACES = 100  # lfw_subset.npy: 100 face crops, then 100 non-faces (not used)

OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec("cat", "a cat", "chelsea.png", ((30, 0, 430, 300),), "ellipse"),
    ObjectSpec("coffee cup", "a coffee cup", "coffee.png", ((70, 5, 490, 395),), "ellipse"),
    ObjectSpec("rocket", "a rocket", "rocket.jpg", ((298, 122, 344, 388),), "not_blue",
               (0.4, 0.55)),
    ObjectSpec("astronaut", "an astronaut", "astronaut.png", ((70, 0, 400, 480),), "ellipse"),
    ObjectSpec("motorcycle", "a motorcycle", "motorcycle_left.png", ((110, 85, 695, 458),),
               "squircle"),
    ObjectSpec("coin", "a coin", "coins.png", COIN_BOXES, "ellipse", (0.25, 0.4)),
    ObjectSpec("face", "a face", "lfw_subset.npy", ((0, 0, 25, 25),), "ellipse"),
    ObjectSpec("horse", "a horse silhouette", "horse.png", ((15, 5, 395, 312),), "dark"),
)
BACKGROUNDS: tuple[BackgroundSpec, ...] = (
    BackgroundSpec("brick", "a brick wall", "brick.png", (110, 200)),
    BackgroundSpec("grass", "grass", "grass.png", (110, 200)),
    BackgroundSpec("gravel", "gravel", "gravel.png", (110, 200)),
    BackgroundSpec("moon", "the surface of the moon", "moon.png", (120, 200)),
    BackgroundSpec("galaxies", "a field of galaxies", "hubble_deep_field.jpg", (160, 340)),
    BackgroundSpec("text", "a page of text", "page.png", (100, 150)),
)
# Anchor of the object's centre, as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75), "centre": (0.5, 0.5),
}
COMPOSITE_TEMPLATES: tuple[str, ...] = (
    "{obj} on {bg}, {pos}.",
    "a photo of {obj} over {bg}, in the {pos}.",
    "{obj} in the {pos} of a picture of {bg}.",
    "{bg} with {obj} in the {pos}.",
    "{pos}: {obj} against {bg}.",
)
PHOTO_TEMPLATES: tuple[str, ...] = (
    "a photo of {obj}.", "a close-up photo of {obj}.", "{obj}, photographed on its own.",
)
PROMPTS: tuple[str, ...] = ("a photo of the {}.", "the {}.")

# The files the boxes above were drawn on (scikit-image 0.26.0); another build could move them.
SOURCE_SHA256: dict[str, str] = {
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "lfw_subset.npy": "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
    "horse.png": "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
    "brick.png": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "grass.png": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "gravel.png": "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
    "moon.png": "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "page.png": "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3",
}


@dataclass(frozen=True)
class Instance:
    """One object instance: its source photo, box in it, and the RGBA cut-out of the box."""

    photo: np.ndarray
    box: Box
    cutout: Image.Image


# --- sources -------------------------------------------------------------------------------


def skimage_data_dir() -> Path:
    """`skimage/data` of the installed scikit-image, found without importing it (slow, and
    only its files are needed)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"scikit-image is not installed (levl-data photos needs its bundled "
                        f"photos); {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def source_files() -> dict[str, Path]:
    """Every source file, checked against SOURCE_SHA256, since the hand-drawn boxes and the
    byte-identical output hold only for exactly these files."""
    root = skimage_data_dir()
    found = {}
    for name, expected in SOURCE_SHA256.items():
        path = root / name
        if not path.is_file():
            raise DataError(f"{path}: missing from scikit-image; {INSTALL_HINT}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise DataError(f"{path}: not the file the object boxes were drawn on (another "
                            f"scikit-image version?); {INSTALL_HINT} (scikit-image==0.26.0)")
        found[name] = path
    return found


def _load_rgb(name: str) -> np.ndarray:
    """HWC uint8 RGB; RGBA/grey photos are flattened (the horse PNG is opaque black-on-white)."""
    return np.asarray(Image.open(source_files()[name]).convert("RGB"))


def _lfw_faces() -> list[np.ndarray]:
    """The 100 face crops of lfw_subset.npy (25x25 float grey) as uint8 RGB."""
    faces = np.load(source_files()["lfw_subset.npy"])[:LFW_FACES]
    grey = np.clip(np.rint(faces * 255), 0, 255).astype(np.uint8)
    return [np.repeat(face[:, :, None], 3, axis=2) for face in grey]


# --- cut-outs ------------------------------------------------------------------------------


def _ellipse_alpha(h: int, w: int, power: float = 2, feather: float = 0.1) -> np.ndarray:
    """An ellipse (power 2) or squircle (4) inscribed in the box, with a soft rim so the
    paste has no hard halo."""
    y = np.abs((np.arange(h) + 0.5) / h * 2 - 1)
    x = np.abs((np.arange(w) + 0.5) / w * 2 - 1)
    r = (x[None, :] ** power + y[:, None] ** power) ** (1 / power)
    return np.clip((1 - r) / feather, 0, 1)


def _alpha(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Alpha of a box crop in [0, 1]: the object's pixels, not its photo's background."""
    if kind == "ellipse":
        return _ellipse_alpha(*rgb.shape[:2])
    if kind == "squircle":
        return _ellipse_alpha(*rgb.shape[:2], power=4)
    pixels = rgb.astype(np.float32)
    if kind == "not_blue":  # the night sky is blue (B - R ~ 50); the rocket is grey/warm
        return np.clip((pixels[..., 0] - pixels[..., 2] + 35) / 20, 0, 1)
    if kind == "dark":
        return 1 - pixels.mean(axis=2) / 255
    raise ValueError(f"unknown mask kind {kind!r}")


def _instance(photo: np.ndarray, box: Box, kind: str) -> Instance:
    x0, y0, x1, y1 = box
    rgb = photo[y0:y1, x0:x1]
    alpha = np.rint(_alpha(rgb, kind) * 255).astype(np.uint8)
    cutout = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    return Instance(photo=photo, box=box, cutout=cutout)


def _split_of(index: int, count: int) -> str:
    """Every 4th instance of a multi-instance object (coins, faces) is validation-only."""
    return "val" if count > 1 and index % 4 == 3 else "train"


@cache
def object_instances(split: str) -> tuple[tuple[Instance, ...], ...]:
    """Per object (OBJECTS order) the instances this split draws from; built once per
    process because every sample reuses them."""
    out = []
    for spec in OBJECTS:
        if spec.file == "lfw_subset.npy":
            pairs = [(face, spec.boxes[0]) for face in _lfw_faces()]
        else:
            photo = _load_rgb(spec.file)
            pairs = [(photo, box) for box in spec.boxes]
        chosen = [p for i, p in enumerate(pairs) if len(pairs) == 1 or _split_of(i, len(pairs))
                  == split]
        out.append(tuple(_instance(photo, box, spec.mask) for photo, box in chosen))
    return tuple(out)


@cache
def background_photos() -> tuple[np.ndarray, ...]:
    return tuple(_load_rgb(spec.file) for spec in BACKGROUNDS)


# --- one sample ----------------------------------------------------------------------------


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Each sample's own stream, so a sample does not depend on the others (or on order)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, PHOTOSET_VERSION])


def _pick(rng: np.random.Generator, options) -> int:
    return int(rng.integers(len(options)))


def _jitter(rgb: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """Mild brightness change, so one cut-out never gives exactly the same pixels."""
    return rgb.astype(np.float32) * rng.uniform(1 - spread, 1 + spread)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _square(photo: np.ndarray, x0: float, y0: float, side: float, size: int,
            flip: bool) -> np.ndarray:
    """A square crop of `photo` resized to size x size (float, for further jitter)."""
    x, y, s = int(round(x0)), int(round(y0)), max(1, int(round(side)))
    image = Image.fromarray(photo[y:y + s, x:x + s]).resize((size, size), Image.BILINEAR)
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image)


def split_band(split: str, width: int) -> tuple[int, int]:
    """(x0, width) of the columns a split may crop from a background photo: train the left
    60 %, val the right 40 %, so no validation background pixel is seen in training."""
    cut = int(width * (1 - VAL_BAND))
    return (0, cut) if split == "train" else (cut, width - cut)


def _background(rng: np.random.Generator, split: str, size: int) -> tuple[int, np.ndarray]:
    """A random square crop of a random background photo, from this split's band of it."""
    b = _pick(rng, BACKGROUNDS)
    photo = background_photos()[b]
    h, w = photo.shape[:2]
    band_x0, band_w = split_band(split, w)
    lo, hi = BACKGROUNDS[b].side
    side = rng.uniform(lo, min(hi, band_w, h))
    x0 = band_x0 + rng.uniform(0, band_w - side)
    y0 = rng.uniform(0, h - side)
    crop = _square(photo, x0, y0, side, size, flip=bool(rng.random() < 0.5))
    return b, _jitter(crop, rng, 0.1)


def _paste(canvas: np.ndarray, inst: Instance, spec: ObjectSpec, position: str,
           rng: np.random.Generator) -> dict:
    """Scale, flip, brighten and alpha-blend the cut-out at `position`; returns its box."""
    size = canvas.shape[0]
    longest = rng.uniform(*spec.scale) * size
    cw, ch = inst.cutout.size
    w = max(2, int(round(cw * longest / max(cw, ch))))
    h = max(2, int(round(ch * longest / max(cw, ch))))
    flip = bool(rng.random() < 0.5)
    image = inst.cutout.resize((w, h), Image.BILINEAR)
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    rgba = np.asarray(image)
    ax, ay = POSITIONS[position]
    cx, cy = (ax + rng.uniform(-0.04, 0.04)) * size, (ay + rng.uniform(-0.04, 0.04)) * size
    x0 = min(max(int(round(cx - w / 2)), 0), size - w)
    y0 = min(max(int(round(cy - h / 2)), 0), size - h)
    alpha = rgba[..., 3:].astype(np.float32) / 255
    region = canvas[y0:y0 + h, x0:x0 + w]
    rgb = _jitter(rgba[..., :3], rng, 0.15)
    if spec.mask == "dark":  # a black horse on the night sky would be invisible
        rgb = np.full_like(rgb, 25.0 if region.mean() > 110 else 230.0)
    region[:] = region * (1 - alpha) + rgb * alpha
    return {"box": [x0, y0, x0 + w, y0 + h], "flipped": flip}


def _composite(rng: np.random.Generator, split: str, size: int, obj: int,
               inst: Instance) -> tuple[np.ndarray, str, dict]:
    """Cut-out on a background crop; the caption names object, background and position."""
    b, canvas = _background(rng, split, size)
    position = list(POSITIONS)[_pick(rng, POSITIONS)]
    placed = _paste(canvas, inst, OBJECTS[obj], position, rng)
    template = COMPOSITE_TEMPLATES[_pick(rng, COMPOSITE_TEMPLATES)]
    caption = template.format(obj=OBJECTS[obj].phrase, bg=BACKGROUNDS[b].phrase, pos=position)
    meta = {"kind": "composite", "background": BACKGROUNDS[b].name, "position": position,
            **placed}
    return canvas, caption, meta


def _photo(rng: np.random.Generator, size: int, obj: int, inst: Instance
           ) -> tuple[np.ndarray, str, dict]:
    """A random square crop of the object's own photo around its box."""
    h, w = inst.photo.shape[:2]
    x0, y0, x1, y1 = inst.box
    side = min(max(x1 - x0, y1 - y0) * rng.uniform(1.05, 1.35), h, w)
    cx = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * side
    cy = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * side
    left = min(max(cx - side / 2, 0), w - side)
    top = min(max(cy - side / 2, 0), h - side)
    flip = bool(rng.random() < 0.5)
    pixels = _jitter(_square(inst.photo, left, top, side, size, flip), rng, 0.15)
    caption = PHOTO_TEMPLATES[_pick(rng, PHOTO_TEMPLATES)].format(obj=OBJECTS[obj].phrase)
    meta = {"kind": "photo", "background": None, "position": None, "flipped": flip}
    return pixels, caption, meta


def make_sample(seed: int, split: str, index: int, size: int) -> dict:
    """A writer-ready sample: jpg, txt, and json with label/class_name/background/position."""
    rng = sample_rng(seed, split, index)
    obj = _pick(rng, OBJECTS)
    instances = object_instances(split)[obj]
    instance_index = _pick(rng, instances)
    inst = instances[instance_index]
    if rng.random() < PHOTO_PROBABILITY:
        pixels, caption, meta = _photo(rng, size, obj, inst)
    else:
        pixels, caption, meta = _composite(rng, split, size, obj, inst)
    meta = {"label": obj, "class_name": OBJECTS[obj].name, "object": OBJECTS[obj].name,
            "instance": instance_index, **meta}
    return {"__key__": f"{split}_{index:07d}", "jpg": encode_jpeg(_to_uint8(pixels)),
            "txt": caption, "json": meta}


# --- the shard sets ------------------------------------------------------------------------


def photo_labels() -> dict:
    """Manifest `labels` (and classes.json): the zero-shot classes and prompt templates."""
    return {"classes": [o.name for o in OBJECTS], "prompts": list(PROMPTS),
            "template": PROMPTS[0], "backgrounds": [b.name for b in BACKGROUNDS],
            "positions": list(POSITIONS)}


def _source(seed: int, size: int, n: int) -> dict:
    """`source`: kind custom, with the skimage files (and their sha256) it was made from."""
    metadata = [{"path": f"skimage/data/{name}", "sha256": digest}
                for name, digest in SOURCE_SHA256.items()]
    params = {"seed": seed, "image_size": size, "num_samples": n, "version": PHOTOSET_VERSION,
              "photo_probability": PHOTO_PROBABILITY, "val_band": VAL_BAND}
    return {"kind": "custom", "metadata": metadata,
            "subset": {"rule": "levl-data photos", "sha256": None}, "params": params}


def _write_split(out_dir: Path, split: str, n: int, size: int, seed: int) -> Path:
    with ShardSetWriter(out_dir / split, prefix=split, samples_per_shard=SAMPLES_PER_SHARD) as w:
        for index in range(n):
            w.write(make_sample(seed, split, index, size))
        return w.finish(
            name=f"photos-seed{seed}", split=split, source=_source(seed, size, n),
            image={"policy": "composite", "size": size, "encoding": "jpeg"},
            stats={"attempted": n, "written": n, "failures": {}}, labels=photo_labels(),
        )


def _check_args(out_dir: Path, n_train: int, n_val: int, image_size: int, seed: int) -> None:
    """Refuse bad counts/sizes and a non-empty --out before any work (one-line errors)."""
    for flag, n in (("--train", n_train), ("--val", n_val)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{flag} must be a positive integer, got {n!r}")
    if not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"--size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], "
                         f"got {image_size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not an empty directory (a photo set is "
                        "written once; choose a new --out or delete it)")


def make_photo_set(out_dir: Path, *, n_train: int, n_val: int, image_size: int = 112,
                   seed: int = 0) -> dict[str, Path]:
    """Write out_dir/train, out_dir/val (shards + manifest) and out_dir/classes.json;
    returns split -> manifest path. Same arguments, same shard bytes."""
    out_dir = Path(out_dir).absolute()
    _check_args(out_dir, n_train, n_val, image_size, seed)
    source_files()  # fail on a missing/other scikit-image before creating anything
    paths = {split: _write_split(out_dir, split, n, image_size, seed)
             for split, n in (("train", n_train), ("val", n_val))}
    classes = json.dumps(photo_labels(), indent=2) + "\n"
    (out_dir / "classes.json").write_text(classes, encoding="utf-8")
    return paths
