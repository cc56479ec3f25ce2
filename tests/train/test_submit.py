"""`levl-train submit` and `status` on a real SLURM cluster (cluster/local/start, two nodes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_asserts import one_error_line

from levl_data.testing import make_tiny_shards
from levl_model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slurm():
    """Bring the local cluster up (idempotent); stop it afterwards only if we started it."""
    was_up = shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    subprocess.run([ROOT / "cluster/local/start"], check=True, capture_output=True, timeout=600)
    yield
    if not was_up:
        subprocess.run([ROOT / "cluster/local/stop"], check=True, timeout=120)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def test_submit_trains_on_the_cluster_and_status_reports_it(cli, slurm, shards, tmp_path):
    out = tmp_path / "run"
    result = cli("levl-train", "submit", "micro_synthetic", "--nodes", "1", "--smoke", "--wait",
                 "--data", shards, "--out", out, "--set", "data.batch_size=8", cwd=ROOT)
    assert result.returncode == 0, result.stderr + result.stdout
    job = json.loads((out / "job.json").read_text())
    assert job["nodes"] == 1 and job["recipe"] == "micro_synthetic"
    assert (out / "code" / "levl_train" / "loop.py").is_file(), "code snapshot missing"
    checkpoint = load_checkpoint(out)
    assert checkpoint.metadata["step"] == 6
    status = cli("levl-train", "status", out)
    assert status.returncode == 0, status.stderr
    assert f"job        {job['job_id']}" in status.stdout
    assert "step       6  samples seen 48" in status.stdout


def test_unknown_profile_is_one_line(cli, shards, tmp_path):
    result = cli("levl-train", "submit", "micro_synthetic", "--profile", "nosuchsite",
                 "--data", shards, "--out", tmp_path / "run", cwd=ROOT)
    assert "unknown cluster profile 'nosuchsite'" in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_profile_with_a_typo_is_one_line(cli, shards, tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('partition = "gpu"\nacount = "me"\n')
    result = cli("levl-train", "submit", "micro_synthetic", "--profile", bad,
                 "--data", shards, "--out", tmp_path / "run", cwd=ROOT)
    assert "unknown key 'acount'" in one_error_line(result)


def test_batch_that_does_not_split_over_ranks_is_refused_before_queueing(cli, shards, tmp_path):
    result = cli("levl-train", "submit", "micro_synthetic", "--nodes", "3",
                 "--data", shards, "--out", tmp_path / "run", cwd=ROOT)
    assert "does not split over 3 ranks" in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_unreachable_controller_is_one_line(cli, slurm, shards, tmp_path):
    conf = Path("/etc/slurm/slurm.conf").read_text()
    bad_conf = tmp_path / "slurm.conf"
    bad_conf.write_text(conf.replace("SlurmctldPort=6817", "SlurmctldPort=6999"))
    result = cli("levl-train", "submit", "micro_synthetic", "--smoke", "--data", shards,
                 "--out", tmp_path / "run", cwd=ROOT, env={"SLURM_CONF": str(bad_conf)})
    assert "SLURM controller unreachable (Slurmctld(primary) at" in one_error_line(result)
    assert not (tmp_path / "run").exists()
