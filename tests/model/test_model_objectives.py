"""Objectives pinned against hand computations and the stop-gradient / ablation semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from levl_model import InfoNCE, LeVLJEPA, ObjectiveConfig, SigLIP, build_objective
from levl_model.sigreg import sigreg


def random_out(b: int = 6, e: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(b, e, generator=generator) for k in ("z_v", "z_t", "pred_v", "pred_t")}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).sum(axis=1, keepdims=True))


def hand_infonce(z_v: np.ndarray, z_t: np.ndarray, scale: float) -> float:
    v, t = unit_rows(z_v), unit_rows(z_t)
    n = len(v)
    logits = [[scale * float(np.dot(v[i], t[j])) for j in range(n)] for i in range(n)]
    image_to_text = (
        -sum(
            logits[i][i] - math.log(sum(math.exp(logits[i][j]) for j in range(n))) for i in range(n)
        )
        / n
    )
    text_to_image = (
        -sum(
            logits[j][j] - math.log(sum(math.exp(logits[i][j]) for i in range(n))) for j in range(n)
        )
        / n
    )
    return (image_to_text + text_to_image) / 2


def hand_siglip(z_v: np.ndarray, z_t: np.ndarray, t: float, b: float) -> float:
    v, u = unit_rows(z_v), unit_rows(z_t)
    n = len(v)
    total = 0.0
    for i in range(n):
        for j in range(n):
            label = 1.0 if i == j else -1.0
            logit = t * float(np.dot(v[i], u[j])) + b
            total += math.log(1 / (1 + math.exp(-label * logit)))
    return -total / n


def test_infonce_equals_hand_computation_and_has_clip_init():
    objective = build_objective(ObjectiveConfig(name="infonce"))
    assert isinstance(objective, InfoNCE)
    assert objective.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    out = random_out()
    got = objective(out, step=0)
    expected = hand_infonce(out["z_v"].double().numpy(), out["z_t"].double().numpy(), 1 / 0.07)
    assert got["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert set(got) == {"loss", "infonce", "logit_scale"}


def test_siglip_equals_hand_computation_and_has_paper_init():
    objective = build_objective(ObjectiveConfig(name="siglip"))
    assert isinstance(objective, SigLIP)
    with torch.no_grad():  # move off the init so t and b both matter
        objective.t_prime.fill_(math.log(4.0))
        objective.bias.fill_(-1.5)
    out = random_out()
    got = objective(out, step=0)
    expected = hand_siglip(out["z_v"].double().numpy(), out["z_t"].double().numpy(), 4.0, -1.5)
    assert got["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert set(got) == {"loss", "siglip", "t", "b"}
    fresh = SigLIP(ObjectiveConfig(name="siglip"))
    assert (fresh.t_prime.exp().item(), fresh.bias.item()) == (pytest.approx(10.0), -10.0)


@pytest.mark.parametrize("name", ["infonce", "siglip"])
def test_contrastive_temperature_and_bias_are_learnable_parameters(name):
    objective = build_objective(ObjectiveConfig(name=name))
    params = dict(objective.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    objective(random_out(), step=0)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in params.values())


def test_levljepa_loss_combines_terms_with_lambdas():
    cfg = ObjectiveConfig(num_slices=32, lambda_v=0.1, lambda_t=0.05)
    out = random_out(b=32)
    got = LeVLJEPA(cfg)(out, step=3)
    mse = torch.nn.functional.mse_loss
    pred_v, pred_t = mse(out["pred_v"], out["z_t"]), mse(out["pred_t"], out["z_v"])
    s_v = sigreg(out["z_v"], num_slices=32, step=3)
    s_t = sigreg(out["z_t"], num_slices=32, step=3)
    expected = 0.85 * (pred_v + pred_t) / 2 + 0.1 * s_v + 0.05 * s_t
    torch.testing.assert_close(got["loss"], expected)
    torch.testing.assert_close(got["pred_v"], pred_v)
    torch.testing.assert_close(got["sigreg_t"], s_t)
    assert set(got) == {"loss", "pred", "pred_v", "pred_t", "sigreg_v", "sigreg_t"}


def test_cosine_prediction_loss_is_two_minus_two_cos():
    out = random_out()
    got = LeVLJEPA(ObjectiveConfig(num_slices=8, pred_loss="cosine"))(out, step=0)
    cos = torch.nn.functional.cosine_similarity(out["pred_v"], out["z_t"], dim=-1)
    torch.testing.assert_close(got["pred_v"], (2 - 2 * cos).mean())


def test_without_sigreg_the_loss_is_the_prediction_term_but_sigreg_is_still_logged():
    out = random_out(b=16)
    got = LeVLJEPA(ObjectiveConfig(num_slices=8, use_sigreg=False))(out, step=0)
    torch.testing.assert_close(got["loss"], got["pred"])
    assert got["sigreg_v"] > 0


def test_without_predictors_z_v_and_z_t_are_matched_directly():
    out = random_out()
    got = LeVLJEPA(ObjectiveConfig(num_slices=8, use_predictors=False))(out, step=0)
    direct = torch.nn.functional.mse_loss(out["z_v"], out["z_t"])
    torch.testing.assert_close(got["pred_v"], direct)
    torch.testing.assert_close(got["pred_t"], direct)


def _grads(term: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor | None]:
    return list(
        torch.autograd.grad(term, list(module.parameters()), retain_graph=True, allow_unused=True)
    )


def _all_zero(grads: list[torch.Tensor | None]) -> bool:
    return all(g is None or not g.any() for g in grads)


def test_stop_gradient_isolates_each_prediction_term(micro_model, batch):
    """pred_v (vision's guess of sg(z_t)) must not train the text tower, and vice versa."""
    out = micro_model(*batch)
    pred_v, pred_t = LeVLJEPA(ObjectiveConfig(num_slices=8)).prediction_terms(out)
    assert _all_zero(_grads(pred_v, micro_model.text)) and _all_zero(
        _grads(pred_v, micro_model.text_proj)
    )
    assert _all_zero(_grads(pred_t, micro_model.vision)) and _all_zero(
        _grads(pred_t, micro_model.vision_proj)
    )
    assert not _all_zero(_grads(pred_v, micro_model.vision))
    assert not _all_zero(_grads(pred_t, micro_model.text))


def test_without_stop_gradient_the_target_tower_gets_gradient(micro_model, batch):
    out = micro_model(*batch)
    pred_v, _ = LeVLJEPA(ObjectiveConfig(num_slices=8, stop_gradient=False)).prediction_terms(out)
    assert not _all_zero(_grads(pred_v, micro_model.text))


def test_full_levljepa_step_reaches_every_model_parameter(micro_model, batch):
    out = micro_model(*batch)
    LeVLJEPA(ObjectiveConfig(num_slices=16))(out, step=0)["loss"].backward()
    missing = [n for n, p in micro_model.named_parameters() if p.grad is None]
    assert missing == []


def test_infonce_matches_open_clip_clip_loss_above_the_cap_with_a_gradient():
    """The forward pass uses exp(logit_scale) unclamped, as open_clip's ClipLoss does: above
    ln 100 the loss is open_clip's and the scale still gets a gradient (the trainer bounds the
    parameter after each step instead)."""
    from open_clip.loss import ClipLoss

    objective = build_objective(ObjectiveConfig(name="infonce"))
    with torch.no_grad():
        objective.logit_scale.fill_(5.0)
    out = random_out(b=8, seed=4)
    loss = objective(out, step=0)["loss"]
    reference = ClipLoss()(torch.nn.functional.normalize(out["z_v"], dim=-1),
                           torch.nn.functional.normalize(out["z_t"], dim=-1),
                           torch.tensor(5.0).exp())
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    assert objective.logit_scale.grad.abs().item() > 0
    assert objective.parameter_bounds() == {"logit_scale": (0.0, math.log(100.0))}
    assert build_objective(ObjectiveConfig(name="siglip")).parameter_bounds() == {
        "t_prime": (0.0, math.log(100.0))}
    assert build_objective(ObjectiveConfig()).parameter_bounds() == {}


def test_siglip_matches_open_clips_siglip_loss_value_and_gradients():
    """The reference tool's definition: open_clip's SigLipLoss (sum over the B² pairs over B),
    at a trained-looking t and b, with the gradients of t' and b."""
    from open_clip.loss import SigLipLoss

    objective = build_objective(ObjectiveConfig(name="siglip"))
    with torch.no_grad():
        objective.t_prime.fill_(2.5)
        objective.bias.fill_(-4.0)
    out = random_out(b=8, seed=5)
    loss = objective(out, step=0)["loss"]
    t_prime = torch.tensor(2.5, requires_grad=True)
    bias = torch.tensor(-4.0, requires_grad=True)
    reference = SigLipLoss()(torch.nn.functional.normalize(out["z_v"], dim=-1),
                             torch.nn.functional.normalize(out["z_t"], dim=-1),
                             t_prime.exp(), bias)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    reference.backward()
    assert objective.t_prime.grad.item() == pytest.approx(t_prime.grad.item(), rel=1e-5)
    assert objective.bias.grad.item() == pytest.approx(bias.grad.item(), rel=1e-5)
