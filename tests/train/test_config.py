"""Recipes, typed overrides and schedules of levl_train."""

from __future__ import annotations

import dataclasses

import pytest

from levl_model.errors import ModelError
from levl_train.config import apply_overrides, check_config, config_from_dict
from levl_train.errors import TrainError
from levl_train.recipes import RECIPES, get_recipe
from levl_train.schedule import lr_at


def test_every_recipe_builds_and_round_trips_through_its_dict():
    for name in RECIPES:
        cfg = get_recipe(name)
        assert cfg.recipe == name
        assert config_from_dict(cfg.to_dict()) == cfg


def test_datacomp_recipe_matches_method():
    cfg = get_recipe("vit_b16_datacomp_l")
    assert (cfg.model.vision.width, cfg.model.vision.depth, cfg.model.vision.patch_size) == (
        768, 12, 16)
    assert cfg.model.heads.embed_dim == 256 and cfg.model.text.vocab_size == 50257
    assert cfg.data.batch_size == 4096 and cfg.steps == 200_000
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_steps) == (2e-4, 2e-5, 1000)
    assert (cfg.objective.lambda_v, cfg.objective.lambda_t) == (0.02, 0.02)
    assert cfg.objective.num_slices == 4096


def test_smoke_switch_shrinks_steps_and_batch_but_keeps_the_model():
    full, smoke = get_recipe("vit_b16_datacomp_l"), get_recipe("vit_b16_datacomp_l", smoke=True)
    assert smoke.model == full.model
    assert smoke.steps < 10 and smoke.data.batch_size <= 16


def test_unknown_recipe_names_the_choices():
    with pytest.raises(TrainError, match="unknown recipe 'nope'.*tiny_synthetic"):
        get_recipe("nope")


def test_overrides_parse_the_declared_types():
    cfg = apply_overrides(get_recipe("micro_synthetic"), [
        "optim.lr=1e-4", "steps=7", "data.augment=false", "model.vision.depth=3",
        "objective.pred_loss=cosine", "data.manifest=/x/manifest.json",
    ])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.steps, int) and cfg.steps == 7
    assert cfg.data.augment is False and cfg.model.vision.depth == 3
    assert cfg.objective.pred_loss == "cosine" and cfg.data.manifest == "/x/manifest.json"


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'lrr'"),
    ("steps=1.5", "expected int"),
    ("optim.lr=fast", "expected float"),
    ("data.augment=maybe", "expected bool"),
    ("optim=1", "is a section"),
    ("steps", "expected key=value"),
])
def test_bad_overrides_are_one_clear_error(override, message):
    with pytest.raises(TrainError, match=message):
        apply_overrides(get_recipe("micro_synthetic"), [override])


def test_an_invalid_objective_value_is_refused():
    with pytest.raises((ModelError, TrainError)):
        apply_overrides(get_recipe("micro_synthetic"), ["objective.name=byol"])


def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    optim = dataclasses.replace(get_recipe("micro_synthetic").optim, lr=1.0, min_lr=0.1,
                                warmup_steps=10, schedule="cosine")
    lrs = [lr_at(s, 110, optim) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_wsd_schedule_is_flat_then_decays_linearly():
    optim = dataclasses.replace(get_recipe("micro_synthetic").optim, lr=1.0, min_lr=0.0,
                                warmup_steps=0, schedule="wsd", decay_fraction=0.5)
    assert lr_at(10, 100, optim) == 1.0 and lr_at(49, 100, optim) == 1.0
    assert lr_at(75, 100, optim) == pytest.approx(0.5)


def test_wsd_schedule_warms_up_holds_then_falls_in_equal_steps_to_min_lr():
    optim = dataclasses.replace(get_recipe("micro_synthetic").optim, lr=1.0, min_lr=0.1,
                                warmup_steps=10, schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, 100, optim) for s in range(101)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # warmup
    assert set(lrs[9:81]) == {1.0}  # stable until the last 20 steps
    drops = [a - b for a, b in zip(lrs[80:], lrs[81:], strict=False)]
    assert drops == pytest.approx([0.9 / 20] * 20)  # linear decay...
    assert lrs[100] == pytest.approx(0.1)  # ...reaching min_lr at the end of the run


def test_wsd_with_warmup_running_into_the_decay_is_refused():
    cfg = apply_overrides(get_recipe("micro_synthetic"), [
        "optim.schedule=wsd", "steps=20", "optim.warmup_steps=10", "optim.decay_fraction=0.6"])
    with pytest.raises(TrainError, match=r"warmup \(10 steps\) and decay \(12 = 0.6 x 20"):
        check_config(cfg)


@pytest.mark.parametrize("override, message", [
    ("optim.schedule=linear", "optim.schedule='linear' is unknown"),
    ("precision=fp8", "precision='fp8' is unknown"),
    ("steps=0", "steps=0 must be positive"),
    ("data.batch_size=-1", "data.batch_size=-1 must be positive"),
    ("keep_last=0", "keep_last=0 must be positive"),
    ("optim.grad_clip=-1", r"optim.grad_clip=-1.0 must be >= 0 \(0 turns clipping off\)"),
    ("optim.schedule=wsd,optim.decay_fraction=0",
     r"optim.decay_fraction=0.0 must be in \(0, 1\]"),
    ("precision=fp32,cpu_bf16=true", "cpu_bf16=true asks for bf16 on the CPU but "
                                     "precision='fp32'"),
    ("precision=fp64,engine=deepspeed", "precision=fp64 runs on engine=torch only"),
    ("data.max_failure_rate=5", r"data.max_failure_rate=5.0 must be in \[0, 1\]"),
    ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
    ("data.shuffle_buffer=-5", "data.shuffle_buffer=-5 must be >= 0"),
    ("data.crop_scale_min=0", r"data.crop_scale_min=0.0 must be in \(0, 1\]"),
    ("data.grayscale_p=1.5", r"data.grayscale_p=1.5 must be in \[0, 1\]"),
    ("data.views=0", "data.views=0 must be >= 1"),
    ("data.hue_jitter=0.7", r"data.hue_jitter=0.7 must be in \[0, 0.5\]"),
    ("data.views=2,objective.name=infonce",
     "data.views=2 is for objective.name=levljepa, not infonce; set data.views=1"),
    ("objective.lambda_multi=0.2", r"objective.lambda_multi=0.2 needs several views of each "
                                   r"image; set data.views=2"),
    ("data.views=2,data.clean_views=3", "data.clean_views=3 must be between 0 and data.views=2"),
    ("data.clean_views=1", r"data.clean_views=1 needs several views of each image; set "
                           r"data.views=2"),
    ("objective.caption_views=2", "objective.caption_views=2 must be between 0 and data.views=1"),
    ("data.local_views=-1", "data.local_views=-1 must be >= 0"),
    ("data.local_views=2,objective.name=siglip",
     "data.local_views=2 is for objective.name=levljepa with data.augment=true"),
    ("data.local_views=2,objective.lambda_multi=0.5,data.augment=false",
     "data.local_views=2 is for objective.name=levljepa with data.augment=true"),
    ("data.local_views=2", r"data.local_views=2 only enter the multi-view term; set "
                           r"objective.lambda_multi > 0"),
    ("data.local_views=2,objective.lambda_multi=1,data.local_size=30",
     "data.local_size=30 must be a multiple of the patch size 8 and at most the image size 64"),
    ("data.local_views=2,objective.lambda_multi=1,data.local_size=96",
     "data.local_size=96 must be a multiple of the patch size 8 and at most the image size 64"),
    ("data.local_views=2,objective.lambda_multi=1,data.local_size=32,data.local_scale_min=0.5",
     r"data.local_scale_min=0.5 and data.local_scale_max=0.4 must satisfy 0 < min <= max <= 1"),
    ("optim.text_lr_scale=-1", r"optim.text_lr_scale=-1.0 must be >= 0 \(0 freezes"),
])
def test_values_no_run_could_use_are_refused_up_front(override, message):
    cfg = apply_overrides(get_recipe("micro_synthetic"), override.split(","))
    with pytest.raises(TrainError, match=message):
        check_config(cfg)


def test_every_recipe_passes_the_up_front_check():
    for name in RECIPES:
        check_config(get_recipe(name))
