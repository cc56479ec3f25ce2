"""Faults a long run meets, each injected for real into `levl-train run` subprocesses: SIGKILL
at random steps, SIGKILL while a checkpoint is being written, a full disk, one rank of two
killed. After each, what was promised holds: the last checkpoint loads, `latest` is valid, a
resumed run ends with bitwise the weights of a run never interrupted (CPU, deterministic), and
a dead rank ends the run within seconds, named. Minutes in all: `slow`, run by
`make test-slow`; the disk-full case mounts a small tmpfs, so it needs root."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_asserts import error_line_among_progress
from safetensors.torch import load_file

from levl_data.testing import make_tiny_shards
from levl_model.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STEPS = 12
SETS = (f"steps={STEPS}", "ckpt_every=2", "log_every=1", "keep_last=20", "data.batch_size=8",
        "threads=1", "deterministic=true")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def launch(shards: Path, out: Path, *sets: str) -> subprocess.Popen:
    args = [arg for item in (*SETS, *sets) for arg in ("--set", item)]
    return subprocess.Popen(
        [str(BIN / "levl-train"), "run", "micro_synthetic", "--data", str(shards), "--out",
         str(out), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def logged_steps(out: Path) -> int:
    metrics = out / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def kill_when(process: subprocess.Popen, condition, poll_s: float = 0.001) -> bool:
    """SIGKILL `process` as soon as `condition()` holds; False if it ended first."""
    while process.poll() is None:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(poll_s)
    return False


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / f"checkpoints/step_{STEPS:07d}/model.safetensors")


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference") / "run"
    finish(launch(shards, out))
    return final_weights(out)


def assert_same_weights(weights, reference) -> None:
    assert weights.keys() == reference.keys()
    assert [key for key in weights if not torch.equal(weights[key], reference[key])] == []


def test_sigkill_at_five_random_steps_then_resume_gives_bitwise_the_same_weights(
        shards, reference, tmp_path):
    out = tmp_path / "run"
    kills = sorted(random.Random(7).sample(range(1, STEPS), 5))
    for step in kills:  # each relaunch of the same command continues the run
        killed = kill_when(launch(shards, out), lambda s=step: logged_steps(out) >= s)
        assert killed, f"the run ended before step {step}"
        assert load_checkpoint(out) if (out / "latest").exists() else True  # latest is valid
    finish(launch(shards, out))
    assert_same_weights(final_weights(out), reference)


def writing_a_checkpoint(out: Path) -> bool:
    """A checkpoint is half written: its train-state staging dir or its temp dir exists."""
    checkpoints = out / "checkpoints"
    try:
        return any(entry.startswith(".step_") for entry in os.listdir(checkpoints))
    except FileNotFoundError:
        return False


def test_sigkill_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(
        shards, reference, tmp_path):
    out = tmp_path / "run"
    for _ in range(2):  # the second kill lands in a later checkpoint's write
        before = logged_steps(out)  # a relaunch first clears what the kill left (restore)
        assert kill_when(launch(shards, out), lambda b=before: logged_steps(out) > b + 1
                         and (out / "latest").exists() and writing_a_checkpoint(out)), \
            "no checkpoint write was caught"
        loaded = load_checkpoint(out)  # through `latest`: a finished checkpoint
        assert (out / (out / "latest").read_text().strip()) == Path(loaded.path)
        assert loaded.metadata["step"] % 2 == 0
    finish(launch(shards, out))
    assert_same_weights(final_weights(out), reference)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


@pytest.fixture
def small_disk(tmp_path):
    """A 60 MB tmpfs: room for one micro checkpoint (~41 MB with its optimizer state), not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_checkpointing_is_one_error_and_the_last_checkpoint_survives(
        shards, small_disk):
    out = small_disk / "run"
    process = launch(shards, out, "steps=6")
    _, err = process.communicate(timeout=600)
    assert process.returncode == 2, err[-3000:]
    line = error_line_among_progress(err)
    assert "could not be written" in line and "checkpoints/step_0000002, is intact" in line
    assert load_checkpoint(out).metadata["step"] == 2
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000002"]  # no partials


def worker_pid(launcher: int, local_rank: int) -> int | None:
    """The pid of the launcher's child process running `local_rank` (from /proc: its environ)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_rank_killed_in_a_two_rank_run_ends_the_run_within_seconds_naming_it(shards, tmp_path):
    out = tmp_path / "run"
    args = [arg for item in (*SETS, "engine=deepspeed", "dist.zero_stage=0", "steps=200")
            for arg in ("--set", item)]
    process = subprocess.Popen(
        [str(BIN / "torchrun"), "--nproc_per_node=2", "--master_port=29671", "-m",
         "levl_train.cli", "run", "micro_synthetic", "--data", str(shards), "--out", str(out),
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline = time.monotonic() + 300
    while logged_steps(out) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.1)
    victim = worker_pid(process.pid, local_rank=1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    output, _ = process.communicate(timeout=120)
    assert time.monotonic() - killed_at < 30, "the surviving rank outlived the dead one by 30 s"
    assert process.returncode != 0
    assert "local_rank: 1" in output and "SIGKILL" in output, output[-3000:]


def test_a_run_killed_before_its_first_checkpoint_starts_again_on_the_same_command(
        shards, reference, tmp_path):
    """Nothing to resume from: `run` with the same --out starts at step 0, the dead attempt's
    metrics and TensorBoard events moved to RUN/unfinished/attempt-1, and ends bitwise."""
    out = tmp_path / "run"
    late_checkpoint = "ckpt_every=6"  # the kill lands before the first checkpoint
    assert kill_when(launch(shards, out, late_checkpoint), lambda: logged_steps(out) >= 2)
    assert not (out / "latest").exists()
    finish(launch(shards, out, late_checkpoint))
    attempt = out / "unfinished" / "attempt-1"
    assert len((attempt / "metrics.jsonl").read_text().splitlines()) >= 2
    assert any((attempt / "tensorboard").iterdir())
    steps = [int(line.split('"step": ')[1].split(",")[0])
             for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # the new attempt, from step 1
    assert_same_weights(final_weights(out), reference)


def test_a_loss_that_diverges_on_two_ranks_stops_both_at_the_same_check(shards, tmp_path):
    """The finiteness check is all-reduced at log steps: both ranks stop there together, with
    one `error:` line naming the step, and no checkpoint of the NaN weights is written."""
    out = tmp_path / "run"
    args = [arg for item in (*SETS, "engine=deepspeed", "dist.zero_stage=0", "optim.lr=1e8",
                             "optim.grad_clip=0", "optim.warmup_steps=1", "log_every=4",
                             "ckpt_every=4") for arg in ("--set", item)]
    result = subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node=2", "--master_port=29673", "-m",
         "levl_train.cli", "run", "micro_synthetic", "--data", str(shards), "--out", str(out),
         *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "loss is not finite at step" in error_line_among_progress(output)
    assert not list((out / "checkpoints").glob("step_*"))
