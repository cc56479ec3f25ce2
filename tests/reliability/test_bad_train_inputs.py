"""levl-train on bad input: a non-finite `--set` float, a damaged run dir (truncated config.json,
a symlinked checkpoint, a checkpoint of another schema) and `status` of a directory that is not
a run. Each is one `error:` line, exit 2, and the run dir is left as it was."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_asserts import error_line_among_progress, one_error_line

from levl_data.testing import make_tiny_shards
from levl_train.config import check_config
from levl_train.errors import TrainError
from levl_train.recipes import get_recipe
from levl_train.status import last_metrics

STEP = "checkpoints/step_0000002"
SETS = ("--set", "steps=2", "--set", "ckpt_every=2", "--set", "data.batch_size=8",
        "--set", "device=cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=16, image_size=32)


@pytest.fixture(scope="module")
def finished_run(shards, tmp_path_factory) -> Path:
    """A 2-step micro run with its step-2 checkpoint (trained once, in a child process)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "levl-train"), "run", "micro_synthetic", "--data",
         str(shards), "--out", str(out), *SETS],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    return shutil.copytree(finished_run, tmp_path / "run", symlinks=True)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("item", ["optim.lr=nan", "optim.lr=inf", "optim.lr=-inf",
                                  "optim.grad_clip=nan", "log.collapse_fraction=nan"])
def test_a_non_finite_float_override_is_one_error_line(run_main, shards, tmp_path, item):
    out = tmp_path / "out"
    result = run_main("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                      *SETS, "--set", item)
    line = one_error_line(result)
    assert f"--set {item}: expected float (a finite number" in line, line
    assert not out.exists()


def test_a_non_finite_float_in_a_saved_config_is_refused():
    """config.json may hold NaN (json writes it): check_config must not let it through."""
    cfg = get_recipe("micro_synthetic")
    check_config(cfg)
    nan_lr = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=math.nan))
    with pytest.raises(TrainError, match="optim.lr=nan must be a finite number"):
        check_config(nan_lr)


@pytest.mark.parametrize("command", ["resume", "run"])
def test_a_truncated_config_json_is_one_error_line_naming_it(run_main, shards, run, command):
    config = run / "config.json"
    config.write_text(config.read_text()[:50])
    before = _listing(run)
    argv = ("resume", run) if command == "resume" else (
        "run", "micro_synthetic", "--data", shards, "--out", run, *SETS)
    line = one_error_line(run_main("levl-train", *argv))
    assert f"{config}: not valid JSON" in line, line
    assert _listing(run) == before


@pytest.mark.parametrize("linked", [STEP, "checkpoints"])
def test_a_symlinked_checkpoint_is_refused_not_followed(run_main, run, tmp_path, linked):
    """A resumed run prunes RUN/checkpoints/: through a link it would delete outside the run dir
    (or fail with a traceback after training); it is refused before anything is written."""
    elsewhere = tmp_path / "elsewhere"
    (run / linked).rename(elsewhere)
    (run / linked).symlink_to(elsewhere)
    before, kept = _listing(run), _listing(elsewhere)
    line = one_error_line(run_main("levl-train", "resume", run))
    assert f"{run / linked} is a symlink" in line and "does not follow links" in line, line
    assert _listing(run) == before and _listing(elsewhere) == kept


def test_a_checkpoint_of_another_schema_is_refused_on_resume(run_main, run):
    metadata = run / STEP / "metadata.json"
    document = json.loads(metadata.read_text())
    document["schema"] = "levl.checkpoint/v9"
    metadata.write_text(json.dumps(document))
    before = _listing(run)
    line = one_error_line(run_main("levl-train", "resume", run))
    assert str(metadata) in line and "unknown schema 'levl.checkpoint/v9'" in line, line
    assert _listing(run) == before


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_status_of_a_dir_that_is_not_a_run_is_one_error_line(run_main, tmp_path, content):
    if content:
        (tmp_path / content).write_text("not a run\n")
    line = one_error_line(run_main("levl-train", "status", tmp_path))
    assert f"{tmp_path} is not a run dir" in line, line


def test_status_shows_the_last_complete_metrics_line(run_main, run):
    """A line cut short (a job killed mid-write, or being appended now) is not shown."""
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 4, "loss": 0.')
    assert last_metrics(run)["step"] == 2
    result = run_main("levl-train", "status", run)
    assert result.returncode == 0, result.stderr
    assert "step       2" in result.stdout


def test_a_shard_replaced_after_the_manifest_is_one_error_line_naming_it(run_main, tmp_path):
    """Same sample count, still a valid tar, other bytes: the run stops at the shard's end with
    the loader's sha256 verdict as its one `error:` line (the progress bar may precede it), and
    the new run leaves no run dir behind."""
    manifest = make_tiny_shards(tmp_path / "set", n=16, image_size=32)
    for shard in manifest.parent.glob("*.tar"):
        shard.write_bytes(shard.read_bytes().replace(b"a red square", b"a red sphere", 1))
    out = tmp_path / "run"
    result = run_main("levl-train", "run", "micro_synthetic", "--data", manifest, "--out", out,
                      "--set", "data.batch_size=8", "--set", "steps=2", "--set",
                      "data.num_workers=0")
    assert result.returncode == 2, result.stderr
    line = error_line_among_progress(result.stderr)
    assert "has sha256" in line and "changed after the manifest was written" in line
    assert not out.exists()
