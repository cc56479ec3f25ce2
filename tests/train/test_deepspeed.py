"""The DeepSpeed engine on 2 CPU ranks (gloo, ZeRO-2) through the real launcher, and exact resume.

Each launch pays torchrun + two Python interpreters; the shared-memory comm op is JIT-built once
per machine into ~/.cache/levl/torch_extensions (the first run on a fresh machine takes ~1 min
longer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from levl_data.testing import make_tiny_shards
from levl_model.checkpoint import load_checkpoint

BIN = Path(sys.executable).parent
STEPS, CKPT_EVERY = 8, 2


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """With 4 bad samples (below max_failure_rate): skip counts must survive the resume too."""
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32, bad=4)


def torchrun_command(shards: Path, out: Path, port: int) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={port}",
            "-m", "levl_train.cli", "run", "micro_synthetic", "--data", str(shards),
            "--out", str(out), "--set", "engine=deepspeed", "--set", "dist.zero_stage=2",
            "--set", f"steps={STEPS}", "--set", f"ckpt_every={CKPT_EVERY}",
            "--set", "keep_last=10", "--set", "log_every=1", "--set", "data.batch_size=8",
            "--set", "threads=1", "--set", "deterministic=true"]


def launch(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)


def finish(process: subprocess.Popen, timeout: int = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def full_run(shards, tmp_path_factory):
    """An uninterrupted 2-rank ZeRO-2 run: the reference for the resume test."""
    out = tmp_path_factory.mktemp("full") / "run"
    finish(launch(torchrun_command(shards, out, port=29631)))
    return out


def test_two_rank_zero2_run_writes_a_loadable_checkpoint(full_run):
    loaded = load_checkpoint(full_run)
    assert loaded.metadata["step"] == STEPS and loaded.metadata["samples_seen"] == STEPS * 8
    assert loaded.metadata["recipe"]["engine"] == "deepspeed"
    state = loaded.path / "train_state"
    assert {p.name for p in state.iterdir()} >= {"position.json", "rng_rank0.json",
                                                 "rng_rank1.json", "engine"}
    assert len(list((state / "engine").glob("zero_pp_rank_*_optim_states.pt"))) == 2
    steps = [line for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == STEPS


def wait_for_latest(out: Path, step: int, process: subprocess.Popen, timeout: float = 240):
    """Poll until `latest` names a checkpoint at `step` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = out / "latest"
        if latest.is_file() and latest.read_text().strip() >= f"checkpoints/step_{step:07d}":
            return
        assert process.poll() is None, process.communicate()[0][-4000:]
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {step} within {timeout}s")


def kill_ranks(process: subprocess.Popen) -> None:
    """SIGKILL the ranks (torchrun starts each in its own session), then torchrun itself."""
    for child in psutil.Process(process.pid).children(recursive=True):
        child.send_signal(signal.SIGKILL)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def test_run_killed_after_a_checkpoint_resumes_to_bitwise_the_same_weights(
        full_run, shards, tmp_path):
    out = tmp_path / "run"
    command = torchrun_command(shards, out, port=29632)
    process = launch(command)
    wait_for_latest(out, CKPT_EVERY, process)
    kill_ranks(process)
    killed_at = (out / "latest").read_text().strip()
    assert killed_at < f"checkpoints/step_{STEPS:07d}", "the run finished before the kill"
    logged_before = len((out / "metrics.jsonl").read_text().splitlines())
    output = finish(launch(command))  # the same command finds the checkpoint and continues
    resumed_steps = [json.loads(line)["step"] for line in
                     (out / "metrics.jsonl").read_text().splitlines()[logged_before:]]
    killed_step = int(killed_at.removeprefix("checkpoints/step_"))
    assert resumed_steps == list(range(killed_step + 1, STEPS + 1)), "did not resume"
    assert f"last checkpoint {out}/checkpoints/step_{STEPS:07d}" in output
    resumed = load_file(out / f"checkpoints/step_{STEPS:07d}/model.safetensors")
    reference = load_file(full_run / f"checkpoints/step_{STEPS:07d}/model.safetensors")
    assert resumed.keys() == reference.keys()
    different = [key for key in reference if not torch.equal(resumed[key], reference[key])]
    assert not different, f"resumed from {killed_at}; differ: {different[:5]}"
    final, uninterrupted = (json.loads(path.read_text().splitlines()[-1])["skipped"]
                            for path in (out / "metrics.jsonl", full_run / "metrics.jsonl"))
    assert final == uninterrupted and sum(final.values()) > 0  # both ranks', the whole run's


@pytest.mark.slow
def test_two_rank_zero3_run_writes_whole_consolidated_weights(shards, tmp_path):
    """ZeRO-3 shards every parameter over the ranks; the checkpoint must still hold each one
    whole (gathered before rank 0 writes), in the shapes a fresh model has. Slow: ~1-2 min."""
    from levl_model.model import build_model
    from levl_train.recipes import micro_synthetic

    out = tmp_path / "run"
    command = torchrun_command(shards, out, port=29633) + [
        "--set", "dist.zero_stage=3", "--set", "steps=2", "--set", "ckpt_every=2"]
    finish(launch(command))
    weights = load_file(out / "checkpoints/step_0000002/model.safetensors")
    fresh = build_model(micro_synthetic().model).state_dict()
    shapes = {key: tuple(value.shape) for key, value in weights.items()
              if not key.startswith("objective.")}
    assert shapes == {key: tuple(value.shape) for key, value in fresh.items()}
    assert all(value.abs().sum() > 0 for key, value in weights.items() if key.endswith("weight"))


def test_two_rank_zero3_run_with_local_views_keeps_one_batchnorm_update_a_step(shards, tmp_path):
    """LeVLJEPA+'s local views under ZeRO-3 (parameters gathered by hooks) and the cross-rank
    BatchNorm: they enter the multi-view term, and the projection's running statistics are
    updated once a step (by the global views), not a second time by the local ones."""
    out = tmp_path / "run"
    command = torchrun_command(shards, out, port=29637) + [
        "--set", "dist.zero_stage=3", "--set", "steps=2", "--set", "ckpt_every=2",
        "--set", "data.local_views=2", "--set", "data.local_size=32",
        "--set", "objective.lambda_multi=1"]
    finish(launch(command))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(record["multi"] > 0 for record in records if "multi" in record)
    weights = load_file(out / "checkpoints/step_0000002/model.safetensors")
    tracked = {key: int(value) for key, value in weights.items()
               if key.startswith("vision_proj.") and key.endswith("num_batches_tracked")}
    assert tracked and set(tracked.values()) == {2}, tracked


def test_zero1_and_zero2_with_gradient_accumulation_take_the_same_steps(
        full_run, shards, tmp_path):
    """Stages 1 and 2 differ only in how optimizer state and gradients are partitioned, so with
    2 micro-batches accumulated per rank both take the same steps (up to the order of float
    reductions, which Adam amplifies in near-zero gradients); accumulation itself changes the
    step (BatchNorm and SIGReg see smaller micro-batches), far more than the stage does."""
    runs = {}
    for stage, port in ((1, 29634), (2, 29635)):
        out = tmp_path / f"zero{stage}"
        finish(launch(torchrun_command(shards, out, port) + [
            "--set", f"dist.zero_stage={stage}", "--set", "dist.grad_accum=2",
            "--set", "steps=2", "--set", "ckpt_every=2"]))
        ds_config = json.loads((out / "deepspeed.json").read_text())
        assert ds_config["zero_optimization"]["stage"] == stage
        assert (ds_config["gradient_accumulation_steps"],
                ds_config["train_micro_batch_size_per_gpu"]) == (2, 2)
        assert load_checkpoint(out).metadata["samples_seen"] == 2 * 8
        runs[stage] = out
    logs = {stage: [json.loads(line) for line in (out / "metrics.jsonl").open()]
            for stage, out in runs.items()}
    for one, two in zip(logs[1], logs[2], strict=True):
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-5)
        assert one["grad_norm"] == pytest.approx(two["grad_norm"], rel=1e-3)
    stage1, stage2, unaccumulated = (
        load_file(out / "checkpoints/step_0000002/model.safetensors")
        for out in (runs[1], runs[2], full_run))
    assert _distance(stage1, stage2) < 1e-2 * _distance(stage1, unaccumulated)


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """L2 distance between two models' trained float weights (BatchNorm statistics left out)."""
    keys = [key for key in a if a[key].is_floating_point() and "running_" not in key
            and not key.startswith("objective.")]
    return sum(float((a[key] - b[key]).double().pow(2).sum()) for key in keys) ** 0.5
