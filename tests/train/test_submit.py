"""`levl-train submit` and `status` on a real SLURM cluster (cluster/local/start, two nodes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from cli_asserts import one_error_line
from failing_shards import shards_failing_on
from submitit.core.utils import JobPaths, UncompletedJobError

from levl_data.testing import make_tiny_shards
from levl_model.checkpoint import load_checkpoint
from levl_train.errors import TrainError
from levl_train.recipes import get_recipe
from levl_train.resume import resume_mode
from levl_train.rundir import RunDir
from levl_train.submit import TrainJob, new_submission, wait_for_result

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def slurm():
    """Bring the local cluster up (idempotent); stop it afterwards only if we started it."""
    was_up = shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    started = subprocess.run([ROOT / "cluster/local/start"], capture_output=True, text=True,
                             timeout=600)
    if started.returncode != 0:
        pytest.fail(f"cluster/local/start failed (exit {started.returncode}):\n"
                    f"{started.stdout}{started.stderr}", pytrace=False)
    yield
    if not was_up:
        subprocess.run([ROOT / "cluster/local/stop"], check=True, timeout=120)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def test_submit_trains_on_the_cluster_and_status_reports_it(cli, slurm, shards, tmp_path):
    """Into a run dir whose code/ already holds a planted `sitecustomize.py`: had the job's
    PYTHONPATH been that code/, every task would have run it at start-up."""
    out = tmp_path / "run"
    ran = tmp_path / "planted-code-ran"
    (out / "code").mkdir(parents=True)
    (out / "code" / "sitecustomize.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    result = cli("levl-train", "submit", "micro_synthetic", "--nodes", "1", "--smoke", "--wait",
                 "--data", shards, "--out", out, "--set", "data.batch_size=8", cwd=ROOT)
    assert result.returncode == 0, result.stderr + result.stdout
    job = json.loads((out / "job.json").read_text())
    assert job["nodes"] == 1 and job["recipe"] == "micro_synthetic"
    [snapshot] = out.glob("code/*/levl_train/loop.py")
    assert snapshot.parents[1].name == Path(job["logs"]).name, "code snapshot missing"
    assert not ran.exists(), "the planted sitecustomize.py ran in the job"
    assert (out / "code" / "sitecustomize.py").is_file()  # left as it was, not deleted
    checkpoint = load_checkpoint(out)
    assert checkpoint.metadata["step"] == 6
    status = cli("levl-train", "status", out)
    assert status.returncode == 0, status.stderr
    assert f"job        {job['job_id']}" in status.stdout
    assert "step       6  samples seen 48" in status.stdout


def task_lines(run_dir: Path, job_id: str) -> list[str]:
    """The `levl: rank R of W on NODE ...` line each task printed into its SLURM log."""
    logs = sorted(run_dir.glob(f"slurm/*/{job_id}_*_log.out"))
    return [line for log in logs for line in log.read_text().splitlines()
            if line.startswith("levl: rank")]


def test_two_nodes_train_one_rank_each_under_deepspeed(cli, slurm, shards, tmp_path):
    """tiny_synthetic's engine is torch (one process): on 2 nodes submit runs it under
    DeepSpeed ZeRO-0, says so once, and records it."""
    out = tmp_path / "run"
    result = cli("levl-train", "submit", "tiny_synthetic", "--nodes", "2", "--smoke", "--wait",
                 "--data", shards, "--out", out, "--set", "steps=3", "--set", "threads=1",
                 cwd=ROOT)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.count("engine: deepspeed, ZeRO-0") == 1, result.stdout
    job = json.loads((out / "job.json").read_text())
    assert (job["engine"], job["world_size"], job["nodes"]) == ("deepspeed", 2, 2)
    assert json.loads((out / "config.json").read_text())["engine"] == "deepspeed"
    assert list(out.glob("code/*/cluster/deepspeed/zero0.json")), "ZeRO file not snapshotted"
    ranks = [re.match(r"levl: rank (\d) of 2 on (\S+),", line).groups()
             for line in task_lines(out, job["job_id"])]
    assert sorted(rank for rank, _ in ranks) == ["0", "1"], ranks
    assert len({node for _, node in ranks}) == 2, f"both ranks on one node: {ranks}"
    checkpoint = load_checkpoint(out)
    assert (checkpoint.metadata["step"], checkpoint.metadata["samples_seen"]) == (3, 3 * 16)
    state = checkpoint.path / "train_state"
    assert json.loads((state / "position.json").read_text())["world_size"] == 2
    assert (state / "rng_rank1.json").is_file()
    status = cli("levl-train", "status", out)
    assert "COMPLETED" in status.stdout and "step       3  samples seen 48" in status.stdout


@pytest.mark.slow
def test_one_ranks_data_error_ends_the_two_node_job_with_its_message(cli, slurm, tmp_path):
    """Rank 1's shards were replaced: both tasks stop within seconds (not after the collective
    timeout), and `--wait` reports rank 1's error, not rank 0's broken collective."""
    manifest = shards_failing_on(tmp_path, rank=1)
    out = tmp_path / "run"
    started = time.monotonic()
    result = cli("levl-train", "submit", "tiny_synthetic", "--nodes", "2", "--smoke", "--wait",
                 "--data", manifest, "--out", out, "--set", "threads=1",
                 "--set", "dist.timeout_s=600", cwd=ROOT)
    assert time.monotonic() - started < 300
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    line = one_error_line(result)
    assert line.startswith(f"error: job {job_id} failed (rank 1 failed: manifest {manifest}: "), line
    assert f"`levl-data verify {manifest}`" in line
    logs = json.loads((out / "job.json").read_text())["logs"]
    assert line.endswith(f"its logs are in {out.absolute() / logs}"), line
    rank0_log = (out / logs / f"{job_id}_0_log.err").read_text()
    assert "error: rank 1 failed: manifest" in rank0_log


def test_explicit_torch_engine_on_two_nodes_is_refused(run_main, monkeypatch, shards, tmp_path):
    monkeypatch.chdir(ROOT)  # the checkout's cluster/profiles/
    result = run_main("levl-train", "submit", "tiny_synthetic", "--nodes", "2", "--data", shards,
                      "--out", tmp_path / "run", "--set", "engine=torch")
    assert "--set engine=torch runs one process but --nodes 2" in one_error_line(result)
    assert not (tmp_path / "run").exists()


REQUEUE_STEPS = 10


def wait_for_checkpoint(out: Path, process: subprocess.Popen, timeout: float = 180) -> int:
    """Poll until the run's `latest` names a checkpoint; returns its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "latest").is_file():
            return int((out / "latest").read_text().strip().removeprefix("checkpoints/step_"))
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint within {timeout}s")


@pytest.mark.parametrize(("recipe", "nodes", "batch"), [
    ("micro_synthetic", 1, 8),
    # DeepSpeed on 2 nodes: rank 1 is inside a collective when rank 0 leaves for the requeue.
    pytest.param("tiny_synthetic", 2, 16, marks=pytest.mark.slow),
])
def test_usr2_requeues_the_job_and_it_resumes_from_its_checkpoint(
        slurm, shards, tmp_path, recipe, nodes, batch):
    """USR2 (what SLURM sends before preemption or the time limit) → submitit's checkpoint()
    → requeue; the second attempt continues from the last checkpoint, not from step 0."""
    out = tmp_path / "run"
    command = [BIN / "levl-train", "submit", recipe, "--nodes", nodes, "--wait",
               "--data", shards, "--out", out, "--set", f"steps={REQUEUE_STEPS}",
               "--set", "ckpt_every=2", "--set", "log_every=1",
               "--set", f"data.batch_size={batch}", "--set", "threads=1"]
    process = subprocess.Popen(list(map(str, command)), cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = wait_for_checkpoint(out, process)
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr + stdout
    assert f"last checkpoint {out}/checkpoints/step_{REQUEUE_STEPS:07d}" in stdout
    attempts = [line for line in task_lines(out, job_id) if line.startswith("levl: rank 0 ")]
    assert len(attempts) == 2 and "attempt 1, from step 0" in attempts[0], attempts
    resumed_from = int(re.search(r"attempt 2, resuming from checkpoints/step_(\d+)",
                                 attempts[1]).group(1))
    assert first <= resumed_from < REQUEUE_STEPS, (first, resumed_from)
    # Attempt 1 logged steps 1..k (k >= resumed_from: steps after the checkpoint are redone),
    # attempt 2 resumed_from+1..end.
    steps = [json.loads(line)["step"] for line in
             (out / "metrics.jsonl").read_text().splitlines()]
    k = len(steps) - (REQUEUE_STEPS - resumed_from)
    assert k >= resumed_from, steps
    assert steps == [*range(1, k + 1), *range(resumed_from + 1, REQUEUE_STEPS + 1)], steps
    checkpoint = load_checkpoint(out)
    assert checkpoint.metadata["step"] == REQUEUE_STEPS
    assert checkpoint.metadata["samples_seen"] == REQUEUE_STEPS * batch
    status = subprocess.run([BIN / "levl-train", "status", out], capture_output=True, text=True)
    assert f"job        {job_id}  COMPLETED  (requeued 1×)" in status.stdout, status.stdout
    assert (f"step       {REQUEUE_STEPS}  samples seen {REQUEUE_STEPS * batch}"
            in status.stdout), status.stdout


class KilledTask:
    """A task of job 7 that srun killed (--kill-on-bad-exit): no result pickle, as submitit's
    own task raises then, its logs in submitit's layout."""

    def __init__(self, folder: Path, rank: int) -> None:
        self.paths = JobPaths(folder, "7", rank)

    def result(self):
        raise UncompletedJobError(f"Job 7 (task: 0) with path {self.paths.result_pickle}\n"
                                  "has not produced any output (state: FAILED)")


class KilledJob:
    job_id, num_tasks, state = "7", 2, "OUT_OF_MEMORY"

    def __init__(self, folder: Path) -> None:
        self.paths = JobPaths(folder, "7")

    def task(self, rank: int) -> KilledTask:
        return KilledTask(self.paths.folder, rank)


ATTEMPT_1 = ["levl: rank {r} of 2 on node{n}, job 7 attempt 1, from step 0"]
ATTEMPT_2 = ["levl: rank {r} of 2 on node{n}, job 7 attempt 2, resuming from checkpoints/step_4"]


def traceback_of(exception: str) -> str:
    return f"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n{exception}"


def write_task_logs(folder: Path, rank0: list[str], rank1: list[str]) -> None:
    for rank, lines in ((0, rank0), (1, rank1)):
        text = "\n".join(lines).format(r=rank, n=rank + 1)
        JobPaths(folder, "7", rank).stderr.write_text(text + "\n")


def test_wait_names_the_failing_rank_from_the_last_attempts_logs_when_rank_0_was_killed(
        tmp_path):
    """Rank 1 failed before the group formed, after a requeue; srun killed rank 0, which wrote
    no result. The cause comes from rank 1's last attempt, not from the broken collective its
    first attempt logged when rank 0 left for the requeue, nor from SLURM's own lines."""
    write_task_logs(
        tmp_path,
        rank0=[*ATTEMPT_1, *ATTEMPT_2,
               "slurmstepd-node1: error: *** STEP 7.0 ON node1 CANCELLED AT 2026-12-05 ***"],
        rank1=[*ATTEMPT_1, traceback_of("RuntimeError: Connection closed by peer"),
               *ATTEMPT_2, traceback_of("levl_data.errors.DataError: manifest /mnt/m.json: "
                                        "no such file"),
               "srun: error: node2: task 1: Exited with exit code 1"])
    with pytest.raises(TrainError) as raised:
        wait_for_result(KilledJob(tmp_path))
    assert str(raised.value) == ("job 7 failed (rank 1 failed: manifest /mnt/m.json: no such "
                                 f"file); its logs are in {tmp_path}")


def test_wait_prefers_rank_0s_report_of_the_failure_in_the_last_attempt(tmp_path):
    write_task_logs(
        tmp_path,
        rank0=[*ATTEMPT_1, "error: rank 1 failed: an old attempt's error", *ATTEMPT_2,
               "\r  \rerror: rank 1 failed: loss is nan at step 9; lower optim.lr"],
        rank1=[*ATTEMPT_2, traceback_of("RuntimeError: Connection closed by peer")])
    with pytest.raises(TrainError, match=r"job 7 failed \(rank 1 failed: loss is nan at step 9; "
                                         r"lower optim.lr\)"):
        wait_for_result(KilledJob(tmp_path))


def test_wait_reads_nothing_from_an_earlier_attempt(tmp_path):
    """The last attempt's tasks were killed without a word (the OOM killer): the broken
    collective rank 1 logged in the attempt before is not this failure's cause."""
    write_task_logs(tmp_path, rank0=[*ATTEMPT_1, *ATTEMPT_2],
                    rank1=[*ATTEMPT_1, traceback_of("RuntimeError: Connection closed by peer"),
                           *ATTEMPT_2])
    with pytest.raises(TrainError) as raised:
        wait_for_result(KilledJob(tmp_path))
    assert str(raised.value) == ("job 7 failed (no task logged a cause; SLURM state "
                                 f"OUT_OF_MEMORY); its logs are in {tmp_path}")


def test_each_submission_snapshots_and_logs_into_new_empty_folders(tmp_path):
    """What a copied run dir already holds under code/ and slurm/ (a planted module, a stale
    result pickle for a job id SLURM may hand out again) is never on a job's path."""
    run = tmp_path / "run"
    for planted in ("code/sitecustomize.py", "code/torch/__init__.py", "slurm/7_0_result.pkl"):
        (run / planted).parent.mkdir(parents=True, exist_ok=True)
        (run / planted).write_text("planted")
    first, second = new_submission(run), new_submission(run)
    assert first.code != second.code
    (run / "any-mkdir").mkdir()  # the mode (umask, group) every other folder of the run gets
    assert first.code.stat().st_mode == (run / "any-mkdir").stat().st_mode
    for submission in (first, second):
        assert submission.code.parent == run / "code" and submission.slurm.parent == run / "slurm"
        assert submission.code.name == submission.slurm.name
        assert not any(submission.code.iterdir()) and not any(submission.slurm.iterdir())
    assert (run / "slurm/7_0_result.pkl").read_text() == "planted"  # kept, never read


def test_signal_before_the_first_checkpoint_lets_the_requeued_job_start_anew(tmp_path):
    """submitit calls checkpoint() on USR2; with no checkpoint yet, the requeued job finds this
    run's config and nothing to resume, so it starts over, the dead attempt's files set aside."""
    cfg = get_recipe("micro_synthetic").to_dict()
    run = tmp_path / "run"
    (run / "slurm").mkdir(parents=True)
    (run / "job.json").write_text("{}")
    RunDir(run).create(cfg)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    requeued = TrainJob(cfg, str(run), threads=1).checkpoint()
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    assert requeued.function.run_dir == str(run)
    assert resume_mode(run, cfg) == "restart"
    moved = RunDir(run).restart()
    assert moved == run / "unfinished" / "attempt-1"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.json", "job.json", "slurm", "unfinished"]
    assert (moved / "metrics.jsonl").read_text() == '{"step": 1}\n'
    (run / "metrics.jsonl").write_text("")  # a second dead attempt goes beside the first
    assert RunDir(run).restart() == run / "unfinished" / "attempt-2"


def test_unknown_profile_is_one_line(run_main, monkeypatch, shards, tmp_path):
    monkeypatch.chdir(ROOT)  # the checkout's cluster/profiles/
    result = run_main("levl-train", "submit", "micro_synthetic", "--profile", "nosuchsite",
                      "--data", shards, "--out", tmp_path / "run")
    assert "unknown cluster profile 'nosuchsite'" in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_profile_with_a_typo_is_one_line(run_main, monkeypatch, shards, tmp_path):
    monkeypatch.chdir(ROOT)  # the checkout's cluster/profiles/
    bad = tmp_path / "site.toml"
    bad.write_text('partition = "gpu"\nacount = "me"\n')
    result = run_main("levl-train", "submit", "micro_synthetic", "--profile", bad,
                      "--data", shards, "--out", tmp_path / "run")
    assert "unknown key 'acount'" in one_error_line(result)


def test_batch_that_does_not_split_over_ranks_is_refused_before_queueing(run_main, monkeypatch, shards, tmp_path):
    monkeypatch.chdir(ROOT)  # the checkout's cluster/profiles/
    result = run_main("levl-train", "submit", "micro_synthetic", "--nodes", "3",
                      "--data", shards, "--out", tmp_path / "run")
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
