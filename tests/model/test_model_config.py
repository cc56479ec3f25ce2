from __future__ import annotations

import json

import pytest

from levl_model import (
    SIZES,
    ConfigError,
    HeadsConfig,
    ModelConfig,
    ObjectiveConfig,
    TextConfig,
    VisionConfig,
    model_config,
)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_model_config_sizes_match_table_and_text_matches_vision(size):
    cfg = model_config(size, image_size=64, patch_size=8, embed_dim=128)
    width, depth, heads = SIZES[size]
    assert (cfg.vision.width, cfg.vision.depth, cfg.vision.heads) == (width, depth, heads)
    assert (cfg.text.width, cfg.text.depth, cfg.text.heads) == (width, depth, heads)
    assert (cfg.vision.image_size, cfg.vision.patch_size, cfg.heads.embed_dim) == (64, 8, 128)
    assert (cfg.text.vocab_size, cfg.text.max_length) == (50257, 77)


def test_size_table_is_the_specified_one():
    assert SIZES["micro"] == (64, 2, 2) and SIZES["tiny"] == (192, 12, 3)
    assert SIZES["base"] == (768, 12, 12) and SIZES["large"] == (1024, 24, 16)


def test_unknown_size_is_a_config_error():
    with pytest.raises(ConfigError, match="huge"):
        model_config("huge")


def test_model_config_round_trips_through_json():
    cfg = model_config("tiny", image_size=64, patch_size=8)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_objective_config_round_trips_and_has_paper_defaults():
    cfg = ObjectiveConfig()
    assert (cfg.lambda_v, cfg.lambda_t, cfg.num_slices, cfg.knots, cfg.t_max) == (
        0.02,
        0.02,
        4096,
        17,
        3.0,
    )
    assert ObjectiveConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("cls", "data", "key"),
    [
        (VisionConfig, {"width": 64, "depth": 2, "heads": 2, "colour": 1}, "vision.colour"),
        (VisionConfig, {"width": 64, "depth": 2}, "vision.heads"),
        (VisionConfig, {"width": 64, "depth": 2, "heads": 3}, "vision.heads"),
        (
            VisionConfig,
            {"width": 64, "depth": 2, "heads": 2, "patch_size": 7, "image_size": 32},
            "vision.image_size",
        ),
        (TextConfig, {"width": -1, "depth": 2, "heads": 2}, "text.width"),
        (TextConfig, {"width": 64, "depth": True, "heads": 2}, "text.depth"),
        (HeadsConfig, {"embed_dim": 0}, "heads.embed_dim"),
        (ObjectiveConfig, {"name": "byol"}, "objective.name"),
        (ObjectiveConfig, {"pred_loss": "l1"}, "objective.pred_loss"),
        (ObjectiveConfig, {"lambda_v": 0.6, "lambda_t": 0.5}, "objective.lambda_t"),
        (ObjectiveConfig, {"use_sigreg": "yes"}, "objective.use_sigreg"),
        (ObjectiveConfig, {"knots": 1}, "objective.knots"),
        (
            ModelConfig,
            {"vision": {"width": 64, "depth": 2, "heads": 2}, "text": {}, "heads": {}},
            "text.width",
        ),
    ],
)
def test_bad_config_is_one_line_config_error_naming_the_key(cls, data, key):
    with pytest.raises(ConfigError) as info:
        cls.from_dict(data)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_configs_are_frozen():
    cfg = ObjectiveConfig()
    with pytest.raises(AttributeError):
        cfg.lambda_v = 0.5  # type: ignore[misc]
