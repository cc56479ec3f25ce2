"""Zero-shot recovers a known answer from hand-made embeddings and is at chance when collapsed;
every prompt set (the single template, the 80 OpenAI templates, the dataset's own) is scored side
by side; a dataset's curated class names fill the templates unless the dataset's own are asked for."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from levl_eval.datasets.clip_imagenet import OPENAI_IMAGENET_TEMPLATES
from levl_eval.datasets.prompts import SINGLE
from levl_eval.errors import EvalError
from levl_eval.features.types import ClassTextFeatures, SplitFeatures
from levl_eval.metrics import classification_metrics
from levl_eval.protocols.zeroshot.protocol import (
    READOUTS,
    ZeroShot,
    prompt_ensemble,
    prompt_sets,
    zeroshot_logits,
)
from levl_eval.testing.worlds import StaticFeatures, static_data

NUM_CLASSES, PER_CLASS, EMBED, PROMPTS = 6, 10, 32, 3


def _class_text(generator: torch.Generator) -> ClassTextFeatures:
    centres_CE = torch.randn(NUM_CLASSES, EMBED, generator=generator)
    # prompts differ in scale and by small noise: the ensemble must normalise before averaging
    scales_P = torch.tensor([1.0, 10.0, 0.1])
    z_CPE = centres_CE[:, None, :] * scales_P[None, :, None]
    z_CPE = z_CPE + 0.01 * torch.randn(z_CPE.shape, generator=generator)
    return ClassTextFeatures(z_CPE=z_CPE, pred_CPE=z_CPE.clone())


def _images_near(text: ClassTextFeatures, generator: torch.Generator, noise: float) -> SplitFeatures:
    labels_N = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    centres_CE = F.normalize(text.z_CPE.mean(dim=1), dim=-1)
    z_NE = centres_CE[labels_N] + noise * torch.randn(len(labels_N), EMBED, generator=generator)
    return SplitFeatures(cls_ND=z_NE.clone(), z_NE=z_NE, pred_NE=z_NE.clone(), labels_N=labels_N)


def _run(images: SplitFeatures, text: ClassTextFeatures) -> dict:
    source = StaticFeatures(images={"eval-test": images}, text=text)
    data = static_data(NUM_CLASSES, prompts=("a {}", "the {}", "one {}"))
    return ZeroShot().run(source, data)


def test_images_near_their_class_text_score_perfectly() -> None:
    generator = torch.Generator().manual_seed(0)
    text = _class_text(generator)
    result = _run(_images_near(text, generator, noise=0.05), text)
    assert set(result["readouts"]) == set(READOUTS)
    for readout in READOUTS:
        assert result["readouts"][readout]["top1"] == pytest.approx(1.0)
        assert result["readouts"][readout]["mean_per_class_recall"] == pytest.approx(1.0)
    assert result["readout"] == "average" and result["top1"] == pytest.approx(1.0)
    assert result["data"]["test"]["samples"] == NUM_CLASSES * PER_CLASS
    assert result["data"]["num_prompts"] == 3
    # the dataset's own three templates are the headline, beside the two standard sets
    assert result["prompt_set"] == "dataset"
    assert {name: s["num_prompts"] for name, s in result["prompt_sets"].items()} == {
        "single": 1, "openai80": 80, "dataset": 3}
    assert result["readouts"] == result["prompt_sets"]["dataset"]["readouts"]


def test_collapsed_image_embeddings_score_chance() -> None:
    generator = torch.Generator().manual_seed(1)
    text = _class_text(generator)
    images = _images_near(text, generator, noise=0.0)
    collapsed_NE = torch.ones_like(images.z_NE)
    collapsed = SplitFeatures(collapsed_NE, collapsed_NE, collapsed_NE, images.labels_N)
    result = _run(collapsed, text)
    metrics = result["readouts"]["average"]
    assert result["top1"] == metrics["top1"]
    assert metrics["top1"] == pytest.approx(1 / NUM_CLASSES)
    assert metrics["mean_per_class_recall"] == pytest.approx(1 / NUM_CLASSES)
    assert metrics["top5"] == pytest.approx(5 / NUM_CLASSES)


def test_readouts_use_the_right_pairs() -> None:
    # z_v matches z_t, pred_v matches nothing useful, pred_t is permuted: only zv_zt is perfect
    generator = torch.Generator().manual_seed(2)
    text = _class_text(generator)
    images = _images_near(text, generator, noise=0.0)
    shifted = ClassTextFeatures(z_CPE=text.z_CPE, pred_CPE=text.z_CPE.roll(1, dims=0))
    wrong_pred_v = SplitFeatures(images.cls_ND, images.z_NE, -images.z_NE, images.labels_N)
    metrics = _run(wrong_pred_v, shifted)["readouts"]
    assert metrics["zv_zt"]["top1"] == pytest.approx(1.0)
    assert metrics["predv_zt"]["top1"] < 0.5
    assert metrics["zv_predt"]["top1"] == pytest.approx(0.0)


def test_average_readout_is_the_mean_of_the_three_logits() -> None:
    generator = torch.Generator().manual_seed(3)
    text = _class_text(generator)
    images = _images_near(text, generator, noise=1.0)
    logits = zeroshot_logits(images, text)
    expected_NC = (logits["zv_zt"] + logits["predv_zt"] + logits["zv_predt"]) / 3
    torch.testing.assert_close(logits["average"], expected_NC)
    assert logits["zv_zt"].abs().max() <= 1.0 + 1e-5  # cosine similarities


def test_prompt_ensemble_normalises_before_averaging() -> None:
    a_E, b_E = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 100.0])
    ensemble_CE = prompt_ensemble(torch.stack([a_E, b_E])[None])
    torch.testing.assert_close(ensemble_CE[0], torch.tensor([2**-0.5, 2**-0.5]))


def test_an_encoder_without_predictors_has_the_z_readout_as_its_headline() -> None:
    generator = torch.Generator().manual_seed(6)
    text = _class_text(generator)
    images = _images_near(text, generator, noise=0.8)
    no_pred_text = ClassTextFeatures(z_CPE=text.z_CPE, pred_CPE=None)
    no_pred_images = SplitFeatures(images.cls_ND, images.z_NE, None, images.labels_N)
    result = _run(no_pred_images, no_pred_text)
    assert set(result["readouts"]) == {"zv_zt", "average"}
    assert result["readouts"]["average"] == result["readouts"]["zv_zt"]
    assert result["top1"] == _run(images, text)["readouts"]["zv_zt"]["top1"] > 1 / NUM_CLASSES


def test_the_dataset_s_own_templates_are_the_headline_under_the_standard_name_they_equal() -> None:
    assert prompt_sets(OPENAI_IMAGENET_TEMPLATES) == (
        {"single": SINGLE, "openai80": OPENAI_IMAGENET_TEMPLATES}, "openai80")
    assert prompt_sets(SINGLE)[1] == "single" and "dataset" not in prompt_sets(SINGLE)[0]
    own = ("a {} square.", "a {} gradient.")
    assert prompt_sets(own) == ({"single": SINGLE, "openai80": OPENAI_IMAGENET_TEMPLATES,
                                 "dataset": own}, "dataset")


def _eighty_templates_one_misleading() -> tuple[SplitFeatures, ClassTextFeatures]:
    """Images on one-hot class centres; 80 templates per class, where template 0 (the one the
    single-template set reads) names the next class, and template 1 does too at 100x the norm
    (outweighing the other 78 unless each template is normalised before the mean)."""
    classes, per_class = 4, 3
    centres_CE = torch.eye(classes, 8)
    z_CPE = centres_CE[:, None, :].repeat(1, 80, 1)
    z_CPE[:, 0] = centres_CE.roll(-1, dims=0)
    z_CPE[:, 1] = 100.0 * centres_CE.roll(-1, dims=0)
    labels_N = torch.arange(classes).repeat_interleave(per_class)
    z_NE = centres_CE[labels_N]
    return SplitFeatures(z_NE, z_NE, z_NE, labels_N), ClassTextFeatures(z_CPE, z_CPE.clone())


def test_single_template_and_80_template_ensemble_are_scored_side_by_side_and_differ() -> None:
    images, text = _eighty_templates_one_misleading()
    source = StaticFeatures(images={"eval-test": images}, text=text)
    result = ZeroShot().run(source, static_data(4, prompts=OPENAI_IMAGENET_TEMPLATES))
    assert set(result["prompt_sets"]) == {"single", "openai80"}  # ImageNet's own set is openai80
    single, ensemble = (result["prompt_sets"][name]["readouts"] for name in ("single", "openai80"))
    for readout in READOUTS:
        assert single[readout]["top1"] == 0.0  # every class's one template names the next class
        assert ensemble[readout]["top1"] == 1.0  # 78 of 80 normalised templates name it right
    assert result["prompt_set"] == "openai80" and result["top1"] == 1.0
    assert result["data"]["num_prompts"] == 80
    assert [len(templates) for _, templates in source.text_requests] == [1, 80]


def test_80_template_result_is_the_explicit_mean_of_normalised_prompt_embeddings() -> None:
    generator = torch.Generator().manual_seed(7)
    scales_P = 10.0 ** torch.linspace(-2, 2, 80)
    z_CPE = torch.randn(NUM_CLASSES, 80, EMBED, generator=generator) * scales_P[None, :, None]
    labels_N = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    z_NE = torch.randn(len(labels_N), EMBED, generator=generator)
    images = SplitFeatures(z_NE, z_NE, None, labels_N)
    source = StaticFeatures(images={"eval-test": images}, text=ClassTextFeatures(z_CPE, None))
    result = ZeroShot().run(source, static_data(NUM_CLASSES, prompts=OPENAI_IMAGENET_TEMPLATES))

    unit_CPE = z_CPE / z_CPE.norm(dim=-1, keepdim=True)
    mean_CE = unit_CPE.sum(dim=1) / 80
    class_CE = mean_CE / mean_CE.norm(dim=-1, keepdim=True)
    explicit_NC = (z_NE / z_NE.norm(dim=-1, keepdim=True)) @ class_CE.T
    expected = classification_metrics(explicit_NC, labels_N)
    assert result["prompt_sets"]["openai80"]["readouts"]["zv_zt"] == pytest.approx(expected)
    single_NC = F.normalize(z_NE, dim=-1) @ F.normalize(z_CPE[:, 0], dim=-1).T
    assert result["prompt_sets"]["single"]["readouts"]["zv_zt"] == pytest.approx(
        classification_metrics(single_NC, labels_N))
    unnormalised_CE = F.normalize(z_CPE.mean(dim=1), dim=-1)  # what a plain mean would score
    plain = classification_metrics(F.normalize(z_NE, dim=-1) @ unnormalised_CE.T, labels_N)
    assert plain != expected


def test_curated_class_names_fill_the_templates_unless_the_dataset_s_are_asked_for() -> None:
    generator = torch.Generator().manual_seed(8)
    text = _class_text(generator)
    images = _images_near(text, generator, noise=0.05)
    curated = tuple(f"curated {i}" for i in range(NUM_CLASSES))
    data = replace(static_data(NUM_CLASSES), curated_classes=curated, curated_source="a curated list")

    source = StaticFeatures(images={"eval-test": images}, text=text)
    result = ZeroShot().run(source, data)
    assert {classes for classes, _ in source.text_requests} == {curated}
    assert result["data"]["class_names"] == "curated"
    assert result["data"]["class_names_source"] == "a curated list"
    assert result["settings"]["class_names"] == "curated"

    source = StaticFeatures(images={"eval-test": images}, text=text)
    result = ZeroShot(class_names="dataset").run(source, data)
    assert {classes for classes, _ in source.text_requests} == {data.classes}
    assert result["data"]["class_names"] == "dataset" and result["settings"]["class_names"] == "dataset"


def test_unknown_class_names_choice_is_refused() -> None:
    with pytest.raises(EvalError, match="--class-names 'wordnet': unknown; use one of curated, dataset"):
        ZeroShot(class_names="wordnet")
