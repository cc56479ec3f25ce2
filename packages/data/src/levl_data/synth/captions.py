"""Caption grammar: the main object first (always with its colour and shape), then the other
objects with spatial relations, sometimes a count prefix and the background.

Paraphrases matter: a text encoder trained on one template would learn the template, not the
world; zero-shot prompts ("a photo of a circle.") also need to look like some captions.
"""

from __future__ import annotations

import numpy as np

from levl_data.synth import vocab
from levl_data.synth.relations import region, relation
from levl_data.synth.scene import Background, Scene, SceneObject

BACKGROUND_PROB = 0.35
PERIOD_PROB = 0.3

ONE = (
    "{A}", "a photo of {A}", "a picture of {A}", "an image of {A}", "there is {A} {where}",
    "{A} {where}", "a single {a}", "one {a}", "a photo of a single {a}",
)
TWO = (
    "{A} {rB} {B}", "two shapes: {A} {rB} {B}", "{A} and {B}", "a photo of {A} {rB} {B}",
    "{A} near {B}", "{A}, and {B} {Br} it", "two shapes: {A} and {B}", "an image of {A} and {B}",
)
THREE = (
    "three shapes: {A}, {B} and {C}", "{A}, {B} and {C}", "{A} {rB} {B} and {rC} {C}",
    "a photo of {A}, {B} and {C}", "three shapes: {A} {rB} {B} and {rC} {C}",
    "{A} with {B} and {C}", "an image of {A} {rB} {B}, and {C}",
)
BACKGROUND_TEMPLATES = ("on a {} background", "over a {} pattern", "against a {} backdrop")


def bare_phrase(obj: SceneObject, *, color: bool, size: bool) -> str:
    """"large red circle" without the article."""
    words = ([obj.size] if size else []) + ([obj.color] if color else []) + [obj.shape]
    return " ".join(words)


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def background_phrase(bg: Background, rng: np.random.Generator) -> str:
    return _choice(rng, BACKGROUND_TEMPLATES).format(vocab.TEXTURE_ADJECTIVES[bg.family])


def make_caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption; uses `rng` only, so it is deterministic for a sample's generator."""
    main, others = scene.main, scene.objects[1:]
    a = bare_phrase(main, color=True, size=rng.random() < 0.5)
    fields = {"A": vocab.with_article(a), "a": a, "where": region(main, scene.image_size)}
    for name, obj in zip(("B", "C"), others, strict=False):
        phrase = bare_phrase(obj, color=rng.random() < 0.85, size=rng.random() < 0.4)
        fields[name] = vocab.with_article(phrase)
        fields["r" + name] = relation(main, obj)
        fields[name + "r"] = relation(obj, main)
    templates = (ONE, TWO, THREE)[len(scene.objects) - 1]
    text = _choice(rng, templates).format(**fields)
    if rng.random() < BACKGROUND_PROB:
        text += " " + background_phrase(scene.background, rng)
    if rng.random() < PERIOD_PROB:
        text += "."
    return text
