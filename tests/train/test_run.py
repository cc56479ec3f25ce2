"""`levl-train run` end to end on tiny shards, and its refusals of bad input."""

from __future__ import annotations

import json

import pytest
from cli_asserts import error_line_among_progress, one_error_line

from levl_data.testing import make_tiny_shards
from levl_model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def test_smoke_run_writes_config_metrics_and_valid_checkpoints(cli, shards, tmp_path):
    out = tmp_path / "run"
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                 "--set", "steps=6", "--set", "ckpt_every=2", "--set", "keep_last=2",
                 "--set", "log_every=2", "--set", "data.batch_size=8")
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "micro_synthetic" and config["steps"] == 6
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    for key in ("loss", "pred", "sigreg_v", "sigreg_t", "cos_matched", "cos_shuffled",
                "pred_cos_matched", "pred_cos_shuffled",
                "erank_v", "erank_t", "lr", "samples_per_s", "grad_norm"):
        assert key in records[-1], key
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step_0000004", "step_0000006"]
    assert (out / "latest").read_text().strip() == "checkpoints/step_0000006"
    loaded = load_checkpoint(out)
    assert loaded.metadata["step"] == 6 and loaded.metadata["samples_seen"] == 48
    assert loaded.metadata["recipe"]["recipe"] == "micro_synthetic"


def test_unknown_recipe_is_one_line_and_nothing_is_written(run_main, shards, tmp_path):
    line = one_error_line(run_main("levl-train", "run", "nope", "--data", shards, "--out",
                              tmp_path / "r"))
    assert "unknown recipe 'nope'" in line
    assert not (tmp_path / "r").exists()


def test_unknown_override_key_is_one_line_and_nothing_is_written(run_main, shards, tmp_path):
    line = one_error_line(run_main("levl-train", "run", "micro_synthetic", "--data", shards,
                              "--out", tmp_path / "r", "--set", "optim.lrr=1"))
    assert "optim.lrr" in line
    assert not (tmp_path / "r").exists()


def test_invalid_manifest_is_named_and_nothing_is_written(run_main, tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"schema": "levl.shards/v9"}))
    line = one_error_line(run_main("levl-train", "run", "micro_synthetic", "--data", bad,
                              "--out", tmp_path / "r"))
    assert str(bad) in line
    assert not (tmp_path / "r").exists()


def test_an_existing_run_dir_is_refused(run_main, shards, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text("{}")
    line = one_error_line(run_main("levl-train", "run", "micro_synthetic", "--data", shards,
                              "--out", out, "--smoke"))
    assert "already holds a run" in line
    assert (out / "config.json").read_text() == "{}"


def test_cuda_requested_without_cuda_is_one_line(run_main, shards, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    line = one_error_line(run_main("levl-train", "run", "micro_synthetic", "--data", shards,
                                   "--out", tmp_path / "r", "--set", "device=cuda"))
    assert "CUDA is not available" in line
    assert not (tmp_path / "r").exists()


def test_a_contrastive_run_builds_and_checkpoints_no_predictors(cli, shards, tmp_path):
    """InfoNCE never trains the predictor MLPs, so `--set objective.name=infonce` alone leaves
    them out of the model, the checkpoint and the diagnostics, and draws the towers as
    open_clip does (the init its loss is tuned with)."""
    out = tmp_path / "infonce"
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                 "--set", "objective.name=infonce", "--set", "steps=2", "--set", "log_every=2",
                 "--set", "ckpt_every=2", "--set", "data.batch_size=8")
    assert result.returncode == 0, result.stderr
    loaded = load_checkpoint(out)
    assert loaded.model_config.heads.predictors is False
    assert loaded.model_config.init == "open_clip"
    assert not loaded.model.has_predictors
    assert not [key for key in loaded.model.state_dict() if "_pred." in key]
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "cos_matched" in record and "logit_scale" in record
    assert "pred_cos_matched" not in record


def test_a_multi_view_run_trains_on_two_views_and_checkpoints_a_loadable_model(cli, shards, tmp_path):
    """LeVLJEPA+'s views end to end: the loader stacks two augmented views per image, the
    multi-view term is logged, and the checkpoint (its config recording the term) loads."""
    out = tmp_path / "views"
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                 "--set", "data.views=2", "--set", "objective.lambda_multi=0.2",
                 "--set", "data.grayscale_p=0.2", "--set", "data.crop_scale_min=0.4",
                 "--set", "steps=2", "--set", "log_every=2", "--set", "ckpt_every=2",
                 "--set", "data.batch_size=8")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["multi"] > 0 and "pred_cos_matched" in record and "erank_v" in record
    loaded = load_checkpoint(out)
    assert loaded.metadata["recipe"]["data"]["views"] == 2
    assert loaded.metadata["recipe"]["objective"]["lambda_multi"] == 0.2


def test_a_run_with_local_views_trains_them_into_the_multi_view_term(cli, shards, tmp_path):
    """LeVLJEPA+'s local views end to end: with one global view the multi-view term is made of
    the local views alone, so a positive term shows they were cut out, encoded and pulled."""
    out = tmp_path / "local"
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                 "--set", "data.local_views=3", "--set", "data.local_size=32",
                 "--set", "objective.lambda_multi=1", "--set", "steps=2", "--set", "log_every=2",
                 "--set", "ckpt_every=2", "--set", "data.batch_size=8")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["multi"] > 0 and record["tflops_per_device"] > 0
    assert load_checkpoint(out).metadata["recipe"]["data"]["local_views"] == 3


def test_predictors_the_objective_does_not_train_are_one_line(run_main, shards, tmp_path):
    line = one_error_line(run_main("levl-train", "run", "micro_synthetic", "--data", shards,
                              "--out", tmp_path / "r", "--set", "objective.name=siglip",
                              "--set", "model.heads.predictors=true"))
    assert "model.heads.predictors=true" in line and "trains no predictors" in line
    assert not (tmp_path / "r").exists()


def test_a_diverging_run_stops_at_its_next_log_step_and_saves_nothing(cli, shards, tmp_path):
    """The loss is checked on the device every step and read at log and checkpoint steps: the
    run stops there, names the step it diverged at, and writes no metrics or checkpoint."""
    out = tmp_path / "nan"
    result = cli(
        "levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
        "--set", "optim.lr=1e8", "--set", "optim.grad_clip=0", "--set", "optim.warmup_steps=1",
        "--set", "steps=12", "--set", "log_every=4", "--set", "ckpt_every=4",
        "--set", "data.batch_size=8")
    assert result.returncode == 2, result.stderr
    line = error_line_among_progress(result.stderr)
    assert "loss is not finite at step" in line and "lower optim.lr" in line
    assert int(line.split("at step ")[1].split(";")[0]) <= 4
    assert list((out / "checkpoints").iterdir()) == []
    assert not (out / "metrics.jsonl").exists() or (out / "metrics.jsonl").read_text() == ""


def test_a_run_that_fails_before_its_first_step_leaves_no_run_dir(cli, tmp_path):
    """Every shard unreadable: the first batch fails, and the run dir it had created goes away
    (a stub would otherwise be mistaken for a run that started), so the command can be rerun."""
    manifest = make_tiny_shards(tmp_path / "bad", n=16)
    for shard in manifest.parent.glob("*.tar"):
        shard.write_bytes(b"\x00garbage" * 400)
    out = tmp_path / "run"
    result = cli("levl-train", "run", "micro_synthetic", "--data", manifest, "--out", out,
                 "--set", "steps=4", "--set", "data.batch_size=8")
    assert result.returncode == 2, result.stderr
    assert "unreadable" in error_line_among_progress(result.stderr)
    assert not out.exists()
