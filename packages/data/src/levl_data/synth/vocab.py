"""The synthetic world's vocabulary: shapes, colours, sizes, texture families.

Everything a caption, a question or a label can name lives here, so captions, QA answers and the
manifest's `labels` can never disagree about spelling or order. Class index i is SHAPES[i]; its
segmentation index is i + 1 (0 = background).
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "heart", "ring", "diamond",
)
PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}

# Saturated, well separated hues; backgrounds are desaturated so objects stand out by colour.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (250, 140, 20),
    "yellow": (245, 225, 30),
    "green": (40, 185, 60),
    "cyan": (30, 215, 225),
    "blue": (35, 75, 230),
    "purple": (150, 50, 205),
    "pink": (250, 120, 195),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

# Object side as a fraction of the image side. The main object is medium or large (35-60 % of the
# side, clearly visible at 64 px); distractors are small, or medium next to a large main object.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.17, 0.26),
    "medium": (0.34, 0.43),
    "large": (0.46, 0.60),
}
SIZE_NAMES: tuple[str, ...] = tuple(SIZE_RANGES)
DISTRACTOR_MEDIUM_RANGE: tuple[float, float] = (0.29, 0.36)

TEXTURES: tuple[str, ...] = (
    "stripes", "checker", "dots", "waves", "noise", "grid", "gradient", "bricks",
)
# Adjective used in captions ("on a striped background").
TEXTURE_ADJECTIVES: dict[str, str] = {
    "stripes": "striped",
    "checker": "checkered",
    "dots": "dotted",
    "waves": "wavy",
    "noise": "mottled",
    "grid": "grid",
    "gradient": "gradient",
    "bricks": "brick",
}

# The ImageNet-9 style correlation: each class has its own typical background family (a
# bijection, so a "random other class" always means a different family).
TYPICAL_BACKGROUND: dict[str, str] = {
    "circle": "checker",
    "square": "waves",
    "triangle": "dots",
    "star": "grid",
    "cross": "gradient",
    "heart": "stripes",
    "ring": "bricks",
    "diamond": "noise",
}
TYPICAL_PROBABILITY = 0.8

# Distractor shapes are not uniform, so some shapes are "popular" (POPE's popular negatives).
DISTRACTOR_WEIGHTS: dict[str, float] = {
    "circle": 4.0, "square": 3.0, "star": 2.0, "triangle": 1.5,
    "cross": 1.0, "heart": 1.0, "ring": 1.0, "diamond": 1.0,
}
POPULARITY: tuple[str, ...] = tuple(sorted(SHAPES, key=lambda s: -DISTRACTOR_WEIGHTS[s]))

COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three")

PROMPTS: tuple[str, ...] = (
    "a photo of a {}.",
    "a {} on a background.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {} shape.",
)


def label_of(shape: str) -> int:
    """Class index of a shape name."""
    return SHAPES.index(shape)


def answers() -> list[str]:
    """Every answer a QA pair can have (the manifest's `labels.answers`)."""
    return ["yes", "no", *COLOR_NAMES, *SHAPES, *SIZE_NAMES, *COUNT_WORDS[1:], *TEXTURES]


def with_article(phrase: str) -> str:
    """"an orange star", "a red circle"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase
