"""Zero-shot recovers a known answer from hand-made embeddings and is at chance when collapsed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from levl_eval.featureset import ClassTextFeatures, SplitFeatures
from levl_eval.protocols.zeroshot import READOUTS, ZeroShot, prompt_ensemble, zeroshot_logits
from levl_eval.testing import StaticFeatures, static_data

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
