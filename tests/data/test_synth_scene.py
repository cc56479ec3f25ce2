"""The synthetic world's pure pieces: scenes, rendering, masks, background variants, captions,
questions. No files: these call the generators directly with small counts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from levl_data.synth import vocab
from levl_data.synth.captions import make_caption
from levl_data.synth.codec import decode_mask, decode_rgb
from levl_data.synth.qa import make_qa
from levl_data.synth.relations import relation
from levl_data.synth.render import render_background, render_scene
from levl_data.synth.sample import background_variants, make_sample, scene_metadata
from levl_data.synth.scene import MAX_OVERLAP, SceneObject, sample_scene

SIZE = 64


def scenes(n: int, seed: int = 0, size: int = SIZE):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, size) for _ in range(n)]


def test_scenes_have_a_large_main_object_and_smaller_separated_distractors():
    counts = {1: 0, 2: 0, 3: 0}
    for scene in scenes(400):
        counts[len(scene.objects)] += 1
        main = scene.main
        assert 0.34 * SIZE <= main.side <= 0.6 * SIZE
        assert main.size in ("medium", "large")
        assert scene.label == vocab.SHAPES.index(main.shape)
        for i, obj in enumerate(scene.objects):
            x0, y0, x1, y1 = obj.box
            assert x0 >= 0 and y0 >= 0 and x1 <= SIZE and y1 <= SIZE
            if i:
                assert obj.side < main.side and obj.size != main.size
            for other in scene.objects[:i]:
                ox = max(0, min(x1, other.box[2]) - max(x0, other.box[0]))
                oy = max(0, min(y1, other.box[3]) - max(y0, other.box[1]))
                assert ox * oy <= MAX_OVERLAP * min(obj.side, other.side) ** 2 + 1e-6
    assert all(c > 40 for c in counts.values()), counts


def test_label_background_correlation_is_about_0_8():
    sample = scenes(3000, seed=1)
    typical = [s.background.family == vocab.TYPICAL_BACKGROUND[s.main.shape] for s in sample]
    assert 0.77 <= np.mean(typical) <= 0.83
    atypical = {s.background.family for s, t in zip(sample, typical, strict=True) if not t}
    assert atypical == set(vocab.TEXTURES)  # the other 20 % spread over all families
    labels = np.bincount([s.label for s in sample], minlength=8)
    assert labels.min() > 3000 / 8 * 0.8  # classes roughly balanced


def test_every_texture_family_renders_a_visible_two_tone_pattern():
    rng = np.random.default_rng(0)
    from levl_data.synth.scene import sample_background

    for family in vocab.TEXTURES:
        bg = render_background(sample_background(rng, family), SIZE)
        assert bg.shape == (SIZE, SIZE, 3) and bg.dtype == np.uint8
        luminance = bg.astype(float).mean(axis=2)
        assert luminance.std() > 3, family  # not flat
        assert bg.astype(float).std(axis=2).mean() < 40, family  # desaturated: objects pop out


def test_mask_labels_each_object_and_leaves_background_zero():
    for scene in scenes(200, seed=2):
        image, fg = render_scene(scene)
        mask = fg.mask
        classes = {1 + vocab.label_of(o.shape) for o in scene.objects}
        assert set(np.unique(mask).tolist()) <= classes | {0}
        main_class = scene.label + 1
        # the main object is drawn last, so it is never occluded: most of its box is its class
        x0, y0, x1, y1 = (int(round(v)) for v in scene.main.box)
        assert (mask[y0:y1, x0:x1] == main_class).mean() > 0.25
        outside = np.ones_like(mask, dtype=bool)
        for obj, box in zip(scene.objects, scene_metadata(scene)["objects"], strict=True):
            bx0, by0, bx1, by1 = box["bbox"]
            assert (mask[by0:by1, bx0:bx1] == 1 + vocab.label_of(obj.shape)).any()
            outside[by0:by1, bx0:bx1] = False
        assert (mask[outside] == 0).all()
        background = render_background(scene.background, SIZE)
        assert (image[mask == 0] == background[mask == 0]).all()
        own = np.zeros_like(mask, dtype=bool)  # main-class pixels in no distractor's box
        own[y0:y1, x0:x1] = mask[y0:y1, x0:x1] == main_class
        for box in scene_metadata(scene)["objects"][1:]:
            own[box["bbox"][1]:box["bbox"][3], box["bbox"][0]:box["bbox"][2]] = False
        assert own.any() and (image[own] == np.array(scene.main.rgb)).all()


def test_background_variants_keep_foreground_pixels_and_change_background():
    rng = np.random.default_rng(3)
    for scene in scenes(60, seed=3):
        image, fg = render_scene(scene)
        variants = background_variants(scene, fg, rng)
        typical = vocab.TYPICAL_BACKGROUND[scene.main.shape]
        assert variants["mixed_same"][0] == typical
        assert variants["mixed_rand"][0] != typical
        assert variants["mixed_rand"][0] in vocab.TYPICAL_BACKGROUND.values()
        fgm, bgm = fg.mask > 0, fg.mask == 0
        for _, pixels in variants.values():
            assert (pixels[fgm] == image[fgm]).all()
            assert np.abs(pixels[bgm].astype(int) - image[bgm].astype(int)).mean() > 5


def test_stored_variants_match_foreground_after_jpeg():
    for i in range(8):
        s = make_sample(0, "eval-test", i, SIZE, extras=True)
        mask = decode_mask(s["mask.png"])
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert s["json"]["label"] + 1 in np.unique(mask)
        # interior foreground pixels (away from JPEG ringing at edges) agree closely
        inner = mask > 0
        for axis in (0, 1):
            for shift in (1, -1):
                inner &= np.roll(mask > 0, shift, axis=axis)
        image = decode_rgb(s["jpg"]).astype(int)
        for name in ("mixed_same.jpg", "mixed_rand.jpg"):
            other = decode_rgb(s[name]).astype(int)
            assert np.abs(other[inner] - image[inner]).mean() < 6
            assert np.abs(other[mask == 0] - image[mask == 0]).mean() > 5


def test_captions_name_main_shape_with_colour_first():
    rng = np.random.default_rng(4)
    shape_re = re.compile(r"\b(" + "|".join(vocab.SHAPES) + r")\b")
    seen_background = 0
    texts = set()
    for scene in scenes(500, seed=4):
        text = make_caption(scene, rng)
        texts.add(text)
        main = scene.main
        assert f"{main.color} {main.shape}" in text, text
        first = shape_re.search(text)
        assert first is not None and first.group(1) == main.shape, text
        assert text.index(f"{main.color} {main.shape}") < first.end(), text
        seen_background += any(w in text for w in ("background", "pattern", "backdrop"))
    assert 0.2 < seen_background / 500 < 0.5
    assert len(texts) > 450  # paraphrases, not one template


def test_relations_follow_object_centres():
    def obj(cx, cy):
        return SceneObject("circle", "red", "small", (0, 0, 0), 10.0, cx, cy, 0.0)

    assert relation(obj(10, 30), obj(50, 32)) == "to the left of"
    assert relation(obj(50, 30), obj(10, 32)) == "to the right of"
    assert relation(obj(30, 5), obj(32, 50)) == "above"
    assert relation(obj(30, 50), obj(32, 5)) == "below"


def _exists(phrase: str, scene) -> bool:
    words = phrase.split()
    if len(words) == 1:
        return any(o.shape == words[0] for o in scene.objects)
    return any((o.color, o.shape) == (words[0], words[1]) for o in scene.objects)


def test_qa_answers_agree_with_the_scene():
    rng = np.random.default_rng(5)
    yes = no = 0
    for scene in scenes(300, seed=5):
        qa = make_qa(scene, rng)
        assert {q["type"] for q in qa} == {"attribute", "count", "exists"}
        assert all(q["answer"] in vocab.answers() for q in qa)
        by_q = {q["question"]: q for q in qa if q["type"] != "exists"}
        assert by_q["How many shapes are there?"]["answer"] == vocab.COUNT_WORDS[
            len(scene.objects)]
        plural = vocab.PLURALS[scene.main.shape]
        n_main = sum(o.shape == scene.main.shape for o in scene.objects)
        assert by_q[f"How many {plural} are there?"]["answer"] == vocab.COUNT_WORDS[n_main]
        colour_q = [q for q in qa if q["question"].startswith("What color is the")]
        assert colour_q[0]["answer"] == scene.main.color
        for q in qa:
            m = re.fullmatch(r"What shape is the (\w+) object\?", q["question"])
            if m:
                assert [o.shape for o in scene.objects if o.color == m.group(1)] == [q["answer"]]
        exists = [q for q in qa if q["type"] == "exists"]
        for pope in ("random", "popular", "adversarial"):
            tagged = [q["answer"] for q in exists if q["pope"] == pope]
            assert sorted(tagged) == ["no", "yes"]
        for q in exists:
            m = re.fullmatch(r"Is there an? ([a-z ]+) in the image\?", q["question"])
            assert m, q["question"]
            assert _exists(m.group(1), scene) == (q["answer"] == "yes"), (q, scene)
            yes += q["answer"] == "yes"
            no += q["answer"] == "no"
        assert all(q["pope"] is None for q in qa if q["type"] != "exists")
    assert yes == no


def test_popular_negatives_are_frequent_shapes_and_adversarial_share_an_attribute():
    rng = np.random.default_rng(6)
    popular = []
    for scene in scenes(200, seed=6):
        qa = make_qa(scene, rng)
        neg = {q["pope"]: q["question"] for q in qa if q["answer"] == "no"}
        popular.append(neg["popular"].split()[3])
        adv = neg["adversarial"].split()
        color, shape = adv[3], adv[4]
        assert any(o.color == color or o.shape == shape for o in scene.objects)
    top = set(vocab.POPULARITY[:3])
    assert np.mean([p in top for p in popular]) > 0.9


@pytest.mark.parametrize("size", [64, 128])
def test_sample_is_deterministic_for_seed_split_index(size):
    a = make_sample(7, "eval-test", 3, size, extras=True)
    b = make_sample(7, "eval-test", 3, size, extras=True)
    assert a == b
    assert decode_rgb(a["jpg"]).shape == (size, size, 3)
    assert make_sample(8, "eval-test", 3, size, extras=True)["jpg"] != a["jpg"]
    assert make_sample(7, "eval-train", 3, size, extras=True)["jpg"] != a["jpg"]
    plain = make_sample(7, "eval-test", 3, size, extras=False)
    assert plain["jpg"] == a["jpg"] and plain["txt"] == a["txt"]
    assert set(a) - set(plain) == {"mask.png", "mixed_same.jpg", "mixed_rand.jpg"}
