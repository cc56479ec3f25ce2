"""levl.checkpoint/v1: round trip, run-dir resolution, atomicity and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from levl_model import (
    CHECKPOINT_SCHEMA,
    CheckpointError,
    ObjectiveConfig,
    Preprocess,
    build_metadata,
    build_model,
    build_objective,
    load_checkpoint,
    model_config,
    read_metadata,
    resolve_checkpoint,
    save_checkpoint,
)


@pytest.fixture
def parts(micro_cfg, tokenizer):
    """A trained-looking model (BatchNorm stats moved) and a SigLIP objective with learned params."""
    model = build_model(micro_cfg, seed=0)
    model(torch.randn(4, 3, 32, 32), *tokenizer(["a", "b c", "d", "e f g"]))
    objective_cfg = ObjectiveConfig(name="siglip")
    objective = build_objective(objective_cfg)
    with torch.no_grad():
        objective.bias.fill_(-3.25)
    metadata = build_metadata(
        model_config=micro_cfg,
        objective_config=objective_cfg,
        tokenizer_spec=tokenizer.spec(),
        preprocess=Preprocess(size=32),
        step=100,
        samples_seen=6400,
        manifest_fingerprint="ab" * 32,
        recipe={"name": "micro_test", "optim": {"lr": 2e-4, "betas": (0.9, 0.95)}},
        code_version="test",
    )
    return model, objective, metadata


@pytest.fixture
def saved(tmp_path, parts):
    model, objective, metadata = parts
    return save_checkpoint(
        tmp_path / "run" / "checkpoints" / "step_0000100",
        model=model,
        objective=objective,
        metadata=metadata,
    )


def test_round_trip_is_bitwise_and_metadata_equal(saved, parts):
    model, objective, metadata = parts
    loaded = load_checkpoint(saved)
    for original, restored in ((model, loaded.model), (objective, loaded.objective)):
        a, b = original.state_dict(), restored.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert loaded.metadata == metadata == read_metadata(saved)
    assert loaded.model_config == model.config and loaded.objective_config == objective.config
    assert loaded.preprocess == Preprocess(size=32)
    assert loaded.tokenizer_spec["sha256"] == metadata["tokenizer_spec"]["sha256"]
    assert metadata["schema"] == CHECKPOINT_SCHEMA and metadata["recipe"]["optim"]["betas"] == [
        0.9,
        0.95,
    ]


def test_a_checkpoint_with_0d_objective_scalars_still_loads(saved):
    """Written before the objective's scalars became one-element vectors (for DeepSpeed)."""
    path = saved / "model.safetensors"
    tensors = load_file(path)
    assert tensors["objective.bias"].shape == (1,)
    save_file({key: value.reshape(()) if key.startswith("objective.") else value
               for key, value in tensors.items()}, path)
    loaded = load_checkpoint(saved)
    assert loaded.objective.bias.tolist() == [-3.25]
    assert loaded.objective.t_prime.shape == (1,)


def test_a_model_without_predictors_round_trips_without_predictor_tensors(tmp_path, parts):
    model, _, metadata = parts
    config = model.config
    config = type(config)(config.vision, config.text,
                          type(config.heads)(**{**config.heads.to_dict(), "predictors": False}))
    bare = build_model(config, seed=0)
    assert not bare.has_predictors and set(bare(torch.randn(2, 3, 32, 32),
                                                torch.ones(2, 3, dtype=torch.long),
                                                torch.ones(2, 3, dtype=torch.long))) == {"z_v", "z_t"}
    objective_cfg = ObjectiveConfig(name="infonce")
    saved = save_checkpoint(tmp_path / "ckpt", model=bare, objective=build_objective(objective_cfg),
                            metadata={**metadata, "model_config": config.to_dict(),
                                      "objective_config": objective_cfg.to_dict()})
    assert not [key for key in load_file(saved / "model.safetensors") if "_pred." in key]
    loaded = load_checkpoint(saved)
    assert not loaded.model.has_predictors and loaded.model_config == config


def test_files_use_the_contract_prefixes_and_leave_no_temp_dirs(saved):
    keys = load_file(str(saved / "model.safetensors")).keys()
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {
        "vision",
        "text",
        "vision_proj",
        "text_proj",
        "vision_pred",
        "text_pred",
        "objective",
    }
    assert {"objective.t_prime", "objective.bias"} <= set(keys)
    assert sorted(p.name for p in saved.iterdir()) == ["metadata.json", "model.safetensors"]
    assert [p.name for p in saved.parent.iterdir()] == ["step_0000100"]


def test_run_dir_resolves_through_latest(saved):
    run_dir = saved.parent.parent
    (run_dir / "latest").write_text("checkpoints/step_0000100\n")
    assert resolve_checkpoint(run_dir) == saved
    assert load_checkpoint(run_dir).metadata["step"] == 100


def test_refuses_to_overwrite(saved, parts):
    model, objective, metadata = parts
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(saved, model=model, objective=objective, metadata=metadata)


def test_refuses_metadata_that_does_not_describe_the_model(tmp_path, parts):
    model, objective, metadata = parts
    other = dict(
        metadata, model_config=model_config("micro", image_size=64, patch_size=8).to_dict()
    )
    with pytest.raises(CheckpointError, match="model_config"):
        save_checkpoint(tmp_path / "ckpt", model=model, objective=objective, metadata=other)
    assert not (tmp_path / "ckpt").exists()


def rewrite_metadata(ckpt, change) -> None:
    path = ckpt / "metadata.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def assert_one_line_error(path, *needles: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message


def test_other_schema_is_refused(saved):
    rewrite_metadata(saved, lambda d: d.update(schema="levl.checkpoint/v9"))
    assert_one_line_error(saved, "levl.checkpoint/v9", CHECKPOINT_SCHEMA)


@pytest.mark.parametrize("key", ["model_config", "step", "tokenizer_spec", "manifest_fingerprint"])
def test_missing_required_metadata_key_is_refused(saved, key):
    rewrite_metadata(saved, lambda d: d.pop(key))
    assert_one_line_error(saved, key)


def test_bad_config_value_in_metadata_is_refused(saved):
    rewrite_metadata(saved, lambda d: d["model_config"]["vision"].update(heads=3))
    assert_one_line_error(saved, "vision.heads")


def test_tensor_shape_mismatch_vs_config_is_refused(saved):
    rewrite_metadata(saved, lambda d: d["model_config"]["vision"].update(image_size=64))
    assert_one_line_error(saved, "shape mismatch", "vision.pos_embed (1, 17, 64) vs (1, 65, 64)")


def test_missing_tensor_is_refused(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    del tensors["text.transformer.wpe.weight"]
    save_file(tensors, str(saved / "model.safetensors"))
    assert_one_line_error(saved, "missing keys", "text.transformer.wpe.weight")


def test_unexpected_tensor_is_refused(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    tensors["objective.logit_scale"] = torch.zeros(())
    save_file(tensors, str(saved / "model.safetensors"))
    assert_one_line_error(saved, "unexpected keys", "logit_scale")


def test_missing_or_corrupt_tensor_file_is_refused(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(saved, "unreadable safetensors")
    (saved / "model.safetensors").unlink()
    assert_one_line_error(saved, "missing")


def test_not_a_checkpoint_dir_is_refused(tmp_path):
    assert_one_line_error(tmp_path, "neither metadata.json nor a latest file")
    assert_one_line_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "latest").write_text("checkpoints/step_0000999")
    assert_one_line_error(tmp_path, "step_0000999")


def test_metadata_claiming_a_huge_model_is_refused_before_anything_is_allocated(saved):
    """An 8192-wide, 64-deep model would need ~200 GB; the header check on the meta device
    refuses it in a subprocess whose peak RSS stays that of a small process."""
    meta_path = saved / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    for tower in ("vision", "text"):
        metadata["model_config"][tower].update(width=8192, depth=64, heads=64)
    meta_path.write_text(json.dumps(metadata))
    script = ("import resource, sys\n"
              "from levl_model import CheckpointError, load_checkpoint\n"
              "try:\n    load_checkpoint(sys.argv[1])\n"
              "except CheckpointError as exc:\n    print(exc)\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    result = subprocess.run([sys.executable, "-c", script, str(saved)], capture_output=True,
                            text=True, timeout=300)
    message, peak_mib = result.stdout.strip().splitlines()
    assert "tensors do not match the metadata config" in message, result.stderr[-2000:]
    assert "shape mismatch" in message
    assert int(peak_mib) < 3000, f"peak RSS {peak_mib} MiB"
