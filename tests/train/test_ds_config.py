"""The DeepSpeed config: cluster/deepspeed/zero{stage}.json merged with the recipe's keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from levl_train.ds_config import deepspeed_config, default_config_path
from levl_train.errors import TrainError
from levl_train.recipes import micro_synthetic

REPO = Path(__file__).parents[2]


def staged(stage: int, **dist):
    cfg = micro_synthetic()
    return dataclasses.replace(cfg, dist=dataclasses.replace(cfg.dist, zero_stage=stage, **dist))


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_each_stage_reads_its_file_and_the_recipe_decides_the_batch(stage):
    path = default_config_path(stage)
    assert path == REPO / "cluster" / "deepspeed" / f"zero{stage}.json"
    merged = deepspeed_config(staged(stage, grad_accum=2), micro_batch=4, world_size=2)
    file_keys = json.loads(path.read_text())
    assert merged["zero_optimization"] == {**file_keys["zero_optimization"], "stage": stage}
    assert merged["train_batch_size"] == 16 and merged["train_micro_batch_size_per_gpu"] == 4
    assert merged["gradient_accumulation_steps"] == 2
    assert merged["gradient_clipping"] == micro_synthetic().optim.grad_clip
    assert merged["bf16"] == {"enabled": False}  # weights stay fp32
    assert merged["torch_autocast"]["enabled"] is False  # an fp32 run
    bf16 = deepspeed_config(staged(stage), micro_batch=4, world_size=2, bf16=True)
    assert bf16["torch_autocast"]["enabled"] is True and bf16["torch_autocast"]["dtype"] == "bfloat16"
    assert "transformers.pytorch_utils.Conv1D" in bf16["torch_autocast"][
        "lower_precision_safe_modules"]  # GPT-2's matmuls


def test_deepspeed_accepts_every_merged_config():
    """DeepSpeed's own validation (pydantic, unknown ZeRO keys forbidden) on each file."""
    from deepspeed.runtime.config import DeepSpeedConfig

    for stage in range(4):
        parsed = DeepSpeedConfig(deepspeed_config(staged(stage), micro_batch=8, world_size=1))
        assert parsed.zero_optimization_stage == stage and parsed.train_batch_size == 8


def test_an_explicit_file_replaces_the_default(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1234}}))
    merged = deepspeed_config(staged(2, deepspeed_config=str(path)), 8, 1)
    assert merged["zero_optimization"] == {"reduce_bucket_size": 1234, "stage": 2}


@pytest.mark.parametrize(("content", "message"), [
    ({"train_batch_size": 64}, "sets train_batch_size, which levl derives from data.batch_size"),
    ({"bf16": {"enabled": True}}, "sets bf16, which levl derives from precision"),
    ({"zero_optimization": {"stage": 3}}, "is for ZeRO stage 3 but dist.zero_stage=2"),
    ("not json", "not valid JSON"),
    ([1, 2], "expected a JSON object"),
])
def test_a_bad_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "zero.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(TrainError, match=message) as error:
        deepspeed_config(staged(2, deepspeed_config=str(path)), 8, 1)
    assert str(path) in str(error.value)


def test_a_missing_file_says_how_to_pass_one(tmp_path):
    with pytest.raises(TrainError, match="cannot read it"):
        deepspeed_config(staged(2, deepspeed_config=str(tmp_path / "absent.json")), 8, 1)
    with pytest.raises(TrainError, match="dist.deepspeed_config=FILE"):
        default_config_path(2, anchors=[tmp_path])
