"""LeVLJEPA+'s views (METHOD.md): several augmented views of each image, every view predicting
its caption, the caption predicting the mean view, SIGReg per view and the multi-view term,
pinned against a hand computation in numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from levl_model import LeVLJEPA, ObjectiveConfig
from levl_model.errors import ModelError
from levl_model.preprocess import (
    Preprocess,
    Views,
    pack_local_views,
    split_local_views,
    train_transform,
)
from levl_model.sigreg import sigreg


def views_out(b: int = 16, views: int = 3, e: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    """Image rows image-major ([B*V, E], as the trainer flattens [B, V, C, H, W]), text [B, E]."""
    g = torch.Generator().manual_seed(seed)
    return {"z_v": torch.randn(b * views, e, generator=g), "pred_v": torch.randn(b * views, e, generator=g),
            "z_t": torch.randn(b, e, generator=g), "pred_t": torch.randn(b, e, generator=g)}


def test_views_loss_equals_the_hand_computation():
    b, views, e = 16, 3, 5
    cfg = ObjectiveConfig(num_slices=16, lambda_v=0.1, lambda_t=0.05, lambda_multi=0.2)
    out = views_out(b, views, e)
    got = LeVLJEPA(cfg)(out, step=4)

    z_v = out["z_v"].double().numpy().reshape(b, views, e)
    pred_v = out["pred_v"].double().numpy().reshape(b, views, e)
    z_t, pred_t = out["z_t"].double().numpy(), out["pred_t"].double().numpy()
    hand_pred_v = np.mean((pred_v - z_t[:, None, :]) ** 2)  # each view predicts its caption
    hand_pred_t = np.mean((pred_t - z_v.mean(axis=1)) ** 2)  # the caption predicts the mean view
    hand_multi = np.mean((z_v - z_v.mean(axis=1, keepdims=True)) ** 2)
    per_view = [float(sigreg(torch.from_numpy(z_v[:, v]).float(), num_slices=16, step=4))
                for v in range(views)]
    s_t = float(sigreg(out["z_t"], num_slices=16, step=4))
    expected = (0.85 * (hand_pred_v + hand_pred_t) / 2 + 0.1 * np.mean(per_view) + 0.05 * s_t
                + 0.2 * hand_multi)

    np.testing.assert_allclose(float(got["pred_v"]), hand_pred_v, rtol=1e-5)
    np.testing.assert_allclose(float(got["pred_t"]), hand_pred_t, rtol=1e-5)
    np.testing.assert_allclose(float(got["multi"]), hand_multi, rtol=1e-5)
    np.testing.assert_allclose(float(got["sigreg_v"]), np.mean(per_view), rtol=1e-5)
    np.testing.assert_allclose(float(got["loss"]), expected, rtol=1e-5)


def test_caption_views_limits_which_views_predict_the_caption():
    b, views, e = 12, 3, 4
    out = views_out(b, views, e, seed=2)
    got = LeVLJEPA(ObjectiveConfig(num_slices=8, lambda_multi=1.0, caption_views=1))(out, step=0)

    z_v = out["z_v"].double().numpy().reshape(b, views, e)
    pred_v = out["pred_v"].double().numpy().reshape(b, views, e)
    z_t, pred_t = out["z_t"].double().numpy(), out["pred_t"].double().numpy()
    np.testing.assert_allclose(float(got["pred_v"]), np.mean((pred_v[:, 0] - z_t) ** 2), rtol=1e-5)
    # the caption still predicts the mean of all the image's views
    np.testing.assert_allclose(float(got["pred_t"]), np.mean((pred_t - z_v.mean(axis=1)) ** 2),
                               rtol=1e-5)


def test_more_caption_views_than_views_is_one_clear_error():
    with pytest.raises(ModelError, match="objective.caption_views=3 but the batch has 2 views"):
        LeVLJEPA(ObjectiveConfig(num_slices=8, caption_views=3))(views_out(views=2), step=0)


def test_views_that_agree_have_no_multi_view_term_and_the_term_pulls_them_together():
    b, views, e = 8, 2, 4
    z = torch.randn(b, 1, e).expand(b, views, e).reshape(b * views, e)
    out = {**views_out(b, views, e), "z_v": z}
    cfg = ObjectiveConfig(num_slices=8, lambda_multi=0.5)
    assert float(LeVLJEPA(cfg)(out, step=0)["multi"]) == 0.0

    apart = views_out(b, views, e, seed=1)["z_v"].requires_grad_()
    loss = LeVLJEPA(cfg)({**out, "z_v": apart}, step=0)["loss"]
    loss.backward()
    # a small step against the gradient moves the two views of each image closer
    moved = (apart - 1e-2 * apart.grad).detach().reshape(b, views, e)
    before = apart.detach().reshape(b, views, e)
    assert (moved[:, 0] - moved[:, 1]).norm() < (before[:, 0] - before[:, 1]).norm()


def test_one_view_has_no_multi_view_term():
    out = views_out(views=1)
    got = LeVLJEPA(ObjectiveConfig(num_slices=8))(out, step=0)
    assert "multi" not in got


def test_views_transform_draws_each_view_independently():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    transform = Views([train_transform(Preprocess(size=32), (0.3, 1.0), grayscale_p=0.5,
                                       uint8=True)] * 4)
    torch.manual_seed(0)
    stacked = transform(image)
    assert stacked.shape == (4, 3, 32, 32) and stacked.dtype == torch.uint8
    assert len({bytes(view.numpy()) for view in stacked}) == 4


def test_grayscale_p_one_greys_every_image_and_zero_none():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8))
    grey = train_transform(Preprocess(size=32), color_jitter=False, grayscale_p=1.0, uint8=True)
    colour = train_transform(Preprocess(size=32), color_jitter=False, grayscale_p=0.0, uint8=True)
    out = grey(image)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert not torch.equal(colour(image)[0], colour(image)[1])


def test_clean_views_keep_the_colours_and_the_others_move_them():
    from levl_train.recipes import get_recipe
    from levl_train.setup import image_pipeline

    red = Image.new("RGB", (32, 32), (200, 30, 30))
    cfg = get_recipe("tiny_synthetic")  # two views, 20 % grey; hue over the whole wheel:
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, clean_views=1,
                                                            hue_jitter=0.5))
    views = image_pipeline(cfg)
    torch.manual_seed(0)
    dominant = [views(red).float().mean(dim=(2, 3)).argmax(dim=1) for _ in range(40)]
    assert {int(d[0]) for d in dominant} == {0}
    assert {int(d[1]) for d in dominant} == {0, 1, 2}


def dominant_channels(transform, image, draws: int = 40) -> set[int]:
    torch.manual_seed(0)
    return {int(transform(image).float().mean(dim=(1, 2)).argmax()) for _ in range(draws)}


def test_hue_jitter_moves_colours_round_the_wheel_and_the_mild_jitter_does_not():
    red = Image.new("RGB", (32, 32), (200, 30, 30))
    strong = train_transform(Preprocess(size=32), hue_jitter=0.5, uint8=True)
    mild = train_transform(Preprocess(size=32), color_jitter=True, uint8=True)
    assert dominant_channels(mild, red) == {0}
    assert dominant_channels(strong, red) == {0, 1, 2}


def test_local_views_enter_sigreg_and_the_multi_view_term_but_predict_nothing():
    """LeVLJEPA+ (LeJEPA's MINIMAL): every view, local ones too, is pulled to the mean of its
    image's global views and has its own SIGReg statistic; only global views meet the caption."""
    b, views, local, e = 16, 2, 3, 5
    cfg = ObjectiveConfig(num_slices=16, lambda_v=0.1, lambda_t=0.05, lambda_multi=0.5)
    out = views_out(b, views, e, seed=3)
    z_local = torch.randn(b * local, e, generator=torch.Generator().manual_seed(9))
    got = LeVLJEPA(cfg)({**out, "z_v_local": z_local}, step=2)
    without = LeVLJEPA(cfg)(out, step=2)

    z_v = out["z_v"].double().numpy().reshape(b, views, e)
    z_l = z_local.double().numpy().reshape(b, local, e)
    centre = z_v.mean(axis=1, keepdims=True)
    hand_multi = np.mean((np.concatenate([z_v, z_l], axis=1) - centre) ** 2)
    every = np.concatenate([z_v, z_l], axis=1)
    per_view = [float(sigreg(torch.from_numpy(every[:, v]).float(), num_slices=16, step=2))
                for v in range(views + local)]
    np.testing.assert_allclose(float(got["multi"]), hand_multi, rtol=1e-5)
    np.testing.assert_allclose(float(got["sigreg_v"]), np.mean(per_view), rtol=1e-5)
    for term in ("pred_v", "pred_t", "sigreg_t"):
        assert float(got[term]) == float(without[term])


def test_local_views_alone_make_a_multi_view_term_against_the_one_global_view():
    b, e = 8, 4
    out = views_out(b, 1, e, seed=4)
    z_local = out["z_v"].repeat_interleave(2, dim=0)  # both local views equal the global one
    cfg = ObjectiveConfig(num_slices=8, lambda_multi=1.0)
    assert float(LeVLJEPA(cfg)({**out, "z_v_local": z_local}, step=0)["multi"]) == 0.0
    moved = z_local + 1.0
    # every local view one unit away in each dimension; the global view is its own centre
    assert float(LeVLJEPA(cfg)({**out, "z_v_local": moved}, step=0)["multi"]) == \
        pytest.approx(2 / 3)


def test_local_views_pack_into_frames_and_come_back_unchanged():
    """Five 24-px views in 64-px frames: a 2 x 2 grid each, so two frames, tiled row-major
    from the top-left and zero elsewhere."""
    g = torch.Generator().manual_seed(0)
    b, views, local = 3, 2, 5
    globals_ = torch.randint(0, 256, (b, views, 3, 64, 64), generator=g, dtype=torch.uint8)
    locals_ = torch.randint(1, 256, (b, local, 3, 24, 24), generator=g, dtype=torch.uint8)
    frames = torch.stack([pack_local_views(image_views, 64) for image_views in locals_])
    assert frames.shape == (b, 2, 3, 64, 64)
    assert torch.equal(frames[:, 0, :, :24, 24:48], locals_[:, 1])
    assert torch.equal(frames[:, 1, :, :24, :24], locals_[:, 4])
    assert int((frames != 0).sum()) == locals_.numel()

    got_globals, got_locals = split_local_views(torch.cat([globals_, frames], dim=1), local, 24)
    assert torch.equal(got_globals, globals_) and torch.equal(got_locals, locals_)


def test_views_with_local_transforms_tile_smaller_independent_crops():
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 64, 3), np.uint8))
    p = Preprocess(size=32)
    local = train_transform(p, (0.05, 0.4), uint8=True, size=16)
    transform = Views([train_transform(p, (0.4, 1.0), uint8=True)] * 2, [local] * 3)
    torch.manual_seed(0)
    stacked = transform(image)
    assert stacked.shape == (3, 3, 32, 32) and stacked.dtype == torch.uint8
    _, crops = split_local_views(stacked[None], 3, 16)
    assert crops.shape == (1, 3, 3, 16, 16)
    assert len({bytes(crop.numpy()) for crop in crops[0]}) == 3
    assert not stacked[2, :, 16:, 16:].any()  # the frame's fourth tile is unused


def test_local_views_leave_the_global_path_and_the_running_statistics_alone():
    """The global views' z_v and the projection's BatchNorm running statistics (which evaluation
    normalises z_v with) are what they are without local views; the local views get their own
    z_v_local."""
    from levl_model.model import build_model
    from levl_train.recipes import get_recipe

    cfg = get_recipe("micro_synthetic").model
    g = torch.Generator().manual_seed(0)
    images, local = torch.randn(8, 3, 64, 64, generator=g), torch.randn(12, 3, 32, 32, generator=g)
    ids, mask = torch.randint(0, 50_000, (4, 6), generator=g), torch.ones(4, 6, dtype=torch.long)
    runs = []
    for extra in ((), (local,)):
        model = build_model(cfg, seed=0).train()
        out = model(images, ids, mask, *extra)
        runs.append((out, {k: v.clone() for k, v in model.vision_proj.state_dict().items()}))
    (plain, plain_stats), (with_local, local_stats) = runs
    assert torch.equal(plain["z_v"], with_local["z_v"])
    assert with_local["z_v_local"].shape == (12, cfg.heads.embed_dim)
    assert plain_stats.keys() == local_stats.keys()
    for name, value in plain_stats.items():
        assert torch.equal(value, local_stats[name]), name
    fresh = build_model(cfg, seed=0).vision_proj.state_dict()
    assert not torch.equal(fresh["1.running_mean"], plain_stats["1.running_mean"])
