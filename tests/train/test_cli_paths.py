"""`levl-train resume` and a start that fails after the run dir was made, through the CLI's
entry point (`levl_train.cli.main`) in this process: the exit code and stderr a user sees,
without paying an interpreter start per case."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
import wandb
from safetensors.torch import load_file

from levl_data.testing import make_tiny_shards
from levl_train.cli import _resolved, main
from levl_train.errors import TrainError
from levl_train.golden import golden_config
from levl_train.loop import train
from levl_train.rundir import RunDir


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """golden_config runs on 1 thread with deterministic algorithms; undo that afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def levl_train(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `levl-train ARGS...`."""
    monkeypatch.setattr(sys, "argv", ["levl-train", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def short_config(shards, **changes):
    cfg = golden_config(shards)
    return dataclasses.replace(cfg, **{"steps": 3, "ckpt_every": 2, "keep_last": 10, **changes})


def test_resume_command_continues_from_latest_to_the_same_weights(
        shards, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    train(short_config(shards), out)
    final = out / "checkpoints/step_0000003"
    reference = load_file(final / "model.safetensors")
    (out / "latest").write_text("checkpoints/step_0000002\n")  # as if killed after step 2
    code, stdout, err = levl_train(monkeypatch, capsys, "resume", out)
    assert code == 0, err
    assert f"run {out}: resumed, last checkpoint {final}" in stdout
    resumed = load_file(final / "model.safetensors")
    assert [key for key in reference if not torch.equal(reference[key], resumed[key])] == []
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 3]


def test_resume_of_a_run_that_died_before_its_first_checkpoint_starts_it_again(
        shards, tmp_path, monkeypatch, capsys):
    """A job preempted or killed before step `ckpt_every` left a config and partial metrics:
    `resume` (and a requeued job) trains it from step 0 to the weights of an unbroken run."""
    cfg = short_config(shards)
    train(cfg, tmp_path / "unbroken")
    out = tmp_path / "run"
    RunDir(out).create(cfg.to_dict())
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    code, _, err = levl_train(monkeypatch, capsys, "resume", out)
    assert code == 0, err
    assert f"{out} stopped before its first checkpoint; starting it again from step 0" in err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()]
    assert steps == [1, 2, 3]
    assert (out / "unfinished/attempt-1/metrics.jsonl").read_text().startswith('{"step": 1, "l')
    reference = load_file(tmp_path / "unbroken/checkpoints/step_0000003/model.safetensors")
    restarted = load_file(out / "checkpoints/step_0000003/model.safetensors")
    assert [key for key in reference if not torch.equal(reference[key], restarted[key])] == []


def test_run_records_the_manifest_as_an_absolute_path(tmp_path, monkeypatch):
    """So `levl-train resume RUN_DIR` finds the data from any working directory."""
    monkeypatch.chdir(tmp_path)
    expected = str(tmp_path / "data" / "manifest.json")
    by_flag = _resolved("micro_synthetic", Path("data/manifest.json"), [], smoke=False)
    by_set = _resolved("micro_synthetic", None, ["data.manifest=data/manifest.json"], False)
    assert by_flag.data.manifest == expected and by_set.data.manifest == expected


@pytest.mark.parametrize(("sets", "init", "predictors"), [
    ([], "width_scaled", True),  # the recipe's own: LeVLJEPA from the reference init
    (["objective.name=infonce"], "open_clip", False),  # open_clip's baseline
    (["objective.name=siglip"], "open_clip", False),
    (["objective.name=infonce", "model.init=width_scaled"], "width_scaled", False),
    (["model.init=reference"], "reference", True),
])
def test_the_objective_picks_init_and_predictors_unless_they_are_set(sets, init, predictors):
    cfg = _resolved("small_custom", None, sets, smoke=False)
    assert (cfg.model.init, cfg.model.heads.predictors) == (init, predictors)


def test_a_recipe_keeps_its_own_init_when_the_objective_is_not_switched():
    assert _resolved("clip_parity", None, [], smoke=False).model.init == "open_clip"
    switched = _resolved("clip_parity", None, ["objective.name=levljepa"], smoke=False)
    assert (switched.model.init, switched.model.heads.predictors) == ("width_scaled", True)


def test_resume_command_of_a_dir_without_a_checkpoint_is_one_line(
        tmp_path, monkeypatch, capsys):
    line = one_line(*levl_train(monkeypatch, capsys, "resume", tmp_path)[::2])
    assert f"{tmp_path} is not a run dir" in line


class _RefusedWandb:
    """wandb.init as it fails without credentials (measured: UsageError, nothing printed)."""

    calls = 0

    def __call__(self, **kwargs):
        type(self).calls += 1
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")


@pytest.mark.parametrize("already_there", [(), ("slurm", "job.json")])
def test_wandb_that_cannot_start_is_one_line_and_takes_the_new_run_back_out(
        shards, tmp_path, monkeypatch, capsys, already_there):
    """Nothing half written: the dir is as before (absent, or holding only what `submit` put
    there), so the same command can be rerun once W&B is fixed."""
    monkeypatch.setattr(wandb, "init", _RefusedWandb())
    out = tmp_path / "run"
    for name in already_there:
        (out / name).mkdir(parents=True) if "." not in name else (out / name).write_text("{}")
    code, _, err = levl_train(monkeypatch, capsys, "run", "micro_synthetic", "--data", shards,
                             "--out", out, "--set", "log.wandb_project=levl-test",
                             "--set", "data.batch_size=8")
    line = one_line(code, err)
    assert "W&B could not start" in line and "No API key configured" in line
    assert "unset log.wandb_project" in line
    if already_there:
        assert sorted(p.name for p in out.iterdir()) == sorted(already_there)
    else:
        assert not out.exists()


def test_wandb_failing_on_resume_leaves_the_run_as_it_was(shards, tmp_path, monkeypatch):
    class _Run:
        def log(self, *args, **kwargs): ...
        def finish(self): ...

    log = dataclasses.replace(golden_config(shards).log, wandb_project="levl-test",
                              tensorboard=False)
    cfg = short_config(shards, steps=2, log=log)
    out = tmp_path / "run"
    monkeypatch.setattr(wandb, "init", lambda **kwargs: _Run())
    train(cfg, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(wandb, "init", _RefusedWandb())
    calls = _RefusedWandb.calls
    with pytest.raises(TrainError, match="W&B could not start"):
        train(cfg, out)  # the same run again: it resumes, then W&B refuses
    assert _RefusedWandb.calls == calls + 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_wandb_failing_on_restart_keeps_the_run_and_its_dead_attempt(shards, tmp_path,
                                                                     monkeypatch):
    """A restarted run (stopped before its first checkpoint) is not a new one: when W&B then
    refuses, its config and the dead attempt's files stay, and the same command restarts it."""
    log = dataclasses.replace(golden_config(shards).log, wandb_project="levl-test",
                              tensorboard=False)
    cfg = short_config(shards, steps=2, log=log)
    out = tmp_path / "run"
    RunDir(out).create(cfg.to_dict())
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    config = (out / "config.json").read_text()
    monkeypatch.setattr(wandb, "init", _RefusedWandb())
    with pytest.raises(TrainError, match="W&B could not start"):
        train(cfg, out)
    assert (out / "config.json").read_text() == config
    assert (out / "unfinished/attempt-1/metrics.jsonl").read_text() == '{"step": 1}\n'
