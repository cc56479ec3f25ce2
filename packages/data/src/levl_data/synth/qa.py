"""Questions and answers about a scene, for the frozen-VLM protocol (GQA / VQAv2 / POPE analogues).

Answers come from the scene data, never from the rendered pixels, so they are correct by
construction. Existence questions come in POPE style: for each of random / popular / adversarial,
one "yes" and one "no" question with the same form, so every POPE subset is balanced.
"""

from __future__ import annotations

import numpy as np

from levl_data.synth import vocab
from levl_data.synth.scene import Scene

EXISTS_TEMPLATE = "Is there {} in the image?"


def _qa(question: str, answer: str, kind: str, pope: str | None = None) -> dict:
    return {"question": question, "answer": answer, "type": kind, "pope": pope}


def count_questions(scene: Scene) -> list[dict]:
    shapes = [o.shape for o in scene.objects]
    main = scene.main.shape
    return [
        _qa("How many shapes are there?", vocab.COUNT_WORDS[len(shapes)], "count"),
        _qa(f"How many {vocab.PLURALS[main]} are there?", vocab.COUNT_WORDS[shapes.count(main)],
            "count"),
    ]


def attribute_questions(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Only questions with one right answer: the object asked about is unique by its description."""
    objs, main = scene.objects, scene.main
    shapes = [o.shape for o in objs]
    colors = [o.color for o in objs]
    # The main object's size is unique: distractors are always smaller size classes.
    noun = main.shape if shapes.count(main.shape) == 1 else f"{main.size} {main.shape}"
    out = [_qa(f"What color is the {noun}?", main.color, "attribute")]
    unique_color = [o for o in objs if colors.count(o.color) == 1]
    if unique_color:
        obj = unique_color[int(rng.integers(len(unique_color)))]
        out.append(_qa(f"What shape is the {obj.color} object?", obj.shape, "attribute"))
    pairs = [(o.color, o.shape) for o in objs]
    unique_pair = [o for o in objs if pairs.count((o.color, o.shape)) == 1]
    if unique_pair:
        obj = unique_pair[int(rng.integers(len(unique_pair)))]
        out.append(_qa(f"What size is the {obj.color} {obj.shape}?", obj.size, "attribute"))
    out.append(_qa("What pattern is the background?", scene.background.family, "attribute"))
    return out


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _adversarial(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """(yes phrase, no phrase): a present "colour shape", and one that shares its colour or shape."""
    pairs = {(o.color, o.shape) for o in scene.objects}
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    other_shape = [s for s in vocab.SHAPES if (obj.color, s) not in pairs]
    other_color = [c for c in vocab.COLOR_NAMES if (c, obj.shape) not in pairs]
    if rng.random() < 0.5:
        neg = f"{obj.color} {_pick(rng, other_shape)}"
    else:
        neg = f"{_pick(rng, other_color)} {obj.shape}"
    yes = _pick(rng, sorted(f"{c} {s}" for c, s in pairs))
    return yes, neg


def exists_questions(scene: Scene, rng: np.random.Generator) -> list[dict]:
    present = sorted({o.shape for o in scene.objects})
    absent = [s for s in vocab.SHAPES if s not in present]
    popular_absent = [s for s in vocab.POPULARITY if s not in present][:2]
    adv_yes, adv_no = _adversarial(scene, rng)
    phrases = {
        "random": (_pick(rng, present), _pick(rng, absent)),
        "popular": (_pick(rng, present), _pick(rng, popular_absent)),
        "adversarial": (adv_yes, adv_no),
    }
    out = []
    for pope, (yes, no) in phrases.items():
        out.append(_qa(EXISTS_TEMPLATE.format(vocab.with_article(yes)), "yes", "exists", pope))
        out.append(_qa(EXISTS_TEMPLATE.format(vocab.with_article(no)), "no", "exists", pope))
    return out


def make_qa(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Attribute, count and existence questions (existence: half yes, half no)."""
    return attribute_questions(scene, rng) + count_questions(scene) + exists_questions(scene, rng)
