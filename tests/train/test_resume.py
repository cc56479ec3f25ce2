"""Exact resume on the torch engine (in process), the data stream's position, and the
refusals that keep two different runs from mixing in one run dir."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from levl_data.testing import make_tiny_shards
from levl_train.errors import TrainError
from levl_train.golden import golden_config
from levl_train.loop import resume, train
from levl_train.resume import resume_mode


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


@pytest.fixture
def deterministic_torch():
    """train() switches torch to deterministic algorithms on 1 thread; undo it afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def short_config(shards, engine="torch", **changes):
    cfg = golden_config(shards, engine)
    data = dataclasses.replace(cfg.data, epoch_samples=24)  # 3 batches: resume crosses epochs
    changes = {"steps": 5, "ckpt_every": 2, "keep_last": 10, **changes}
    return dataclasses.replace(cfg, data=data, **changes)


def test_resume_from_an_earlier_checkpoint_reaches_bitwise_the_same_weights(
        shards, tmp_path, deterministic_torch):
    out = tmp_path / "run"
    train(short_config(shards), out)
    final = out / "checkpoints/step_0000005/model.safetensors"
    reference = load_file(final)
    (out / "latest").write_text("checkpoints/step_0000002\n")  # as if killed after step 2
    assert resume(out) == out / "checkpoints/step_0000005"
    resumed = load_file(final)
    assert [k for k in reference if not torch.equal(reference[k], resumed[k])] == []
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 3, 4, 5]


def test_a_resumed_run_counts_the_bad_samples_of_the_whole_run(tmp_path, deterministic_torch):
    """metrics.jsonl's `skipped` is the run's total: the count saved with the checkpoint it
    resumed from plus what it skipped since, equal to the uninterrupted run's at every step
    (it restarted from zero at each resume)."""
    bad = make_tiny_shards(tmp_path / "bad", n=48, image_size=32, bad=8)
    cfg = short_config(bad)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_failure_rate=0.5))
    out = tmp_path / "run"
    train(cfg, out)
    (out / "latest").write_text("checkpoints/step_0000002\n")
    resume(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    first, again = records[:5], records[5:]
    assert [r["step"] for r in again] == [3, 4, 5]
    assert sum(first[-1]["skipped"].values()) >= 4  # 5 batches of 8 over 48 samples, 8 bad
    assert [r["skipped"] for r in again] == [r["skipped"] for r in first[2:]]
    position = json.loads((out / "checkpoints/step_0000002/train_state/position.json")
                          .read_text())
    assert position["skipped"] == first[1]["skipped"]


@pytest.mark.parametrize("skipped", ["3", {"undecodable_image": -1}, {"x": 1.5}])
def test_a_malformed_saved_skip_count_is_refused_on_resume(
        shards, tmp_path, deterministic_torch, skipped):
    out = tmp_path / "run"
    train(short_config(shards, steps=2), out)
    path = out / "checkpoints/step_0000002/train_state/position.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "skipped": skipped}))
    with pytest.raises(TrainError, match=r"position\.json: skipped=.* is not a count per reason"):
        resume(out)


def test_a_run_dir_of_another_recipe_is_refused_and_left_as_it_was(tmp_path, shards):
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "tiny_synthetic"}))
    with pytest.raises(TrainError, match="holds a run of recipe tiny_synthetic, not "
                                         "micro_synthetic; pass another --out"):
        train(short_config(shards), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert json.loads((tmp_path / "config.json").read_text()) == {"recipe": "tiny_synthetic"}


def test_a_run_dir_with_another_config_is_refused_naming_the_key(
        shards, tmp_path, deterministic_torch):
    out = tmp_path / "run"
    cfg = short_config(shards, steps=2)
    train(cfg, out)
    other = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.5))
    with pytest.raises(TrainError, match=rf"optim\.lr={cfg.optim.lr} \(asked: 0\.5\)"):
        train(other, out)


def test_a_run_dir_from_before_a_config_key_existed_still_resumes(
        shards, tmp_path, deterministic_torch):
    """A key added to TrainConfig later (here the whole `log` section) is absent from an older
    run's config.json: it counts as its default, not as a difference."""
    out = tmp_path / "run"
    cfg = short_config(shards, steps=2)
    train(cfg, out)
    saved = json.loads((out / "config.json").read_text())
    del saved["log"]
    (out / "config.json").write_text(json.dumps(saved))
    assert resume_mode(out, cfg.to_dict()) == "resume"
    quieter = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, tensorboard=False))
    with pytest.raises(TrainError, match=r"log\.tensorboard=True \(asked: False\)"):
        resume_mode(out, quieter.to_dict())


def test_resume_of_a_dir_without_a_run_is_refused(tmp_path):
    with pytest.raises(TrainError, match="is not a run dir"):
        resume(tmp_path)


def test_a_global_batch_that_does_not_split_over_ranks_is_refused_first(
        shards, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    cfg = short_config(shards, engine="deepspeed")
    with pytest.raises(TrainError, match="data.batch_size=8 is not divisible by world size 3"):
        train(cfg, tmp_path / "run")
    with pytest.raises(TrainError, match="engine=torch runs one process but WORLD_SIZE=3"):
        train(short_config(shards), tmp_path / "run")
    assert not (tmp_path / "run").exists()
