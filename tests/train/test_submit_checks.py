"""`levl-train submit` refuses a doomed job before anything is queued or written, and the job it
does queue passes its CPUs to srun. No cluster needed: `scontrol` and `sbatch` are stand-ins on
PATH that record every call, so "nothing queued" means sbatch (and scontrol) never ran. The CLI
runs in this process (`main()`, as tests/reliability does): a subprocess per case would pay
torch's import each time."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_asserts import one_error_line

from levl_data.testing import make_tiny_shards
from levl_train.config import apply_overrides
from levl_train.distributed import DistEnv, cuda_device_index
from levl_train.errors import TrainError
from levl_train.preflight import check_passes, resume_reads_note
from levl_train.profiles import ClusterProfile, load_profile
from levl_train.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_GPU = ROOT / "cluster/profiles/example-gpu.toml"
JOB_ID = "4242"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


@pytest.fixture
def fake_slurm(tmp_path):
    """A bin dir whose `scontrol ping` says UP and whose `sbatch` keeps the script it was given
    and answers with a job id (or fails, with SBATCH_FAILS set); both log their calls. Its
    `srun` is there for submitit's check, so these tests need no SLURM installed."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir()
    calls = tmp_path / "slurm-calls.log"
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\necho "scontrol $*" >> {calls}\n'
        'echo "Slurmctld(primary) at fake is UP"\n')
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\necho "sbatch $*" >> {calls}\n'
        'if [ -n "$SBATCH_FAILS" ]; then\n'
        '  echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1\n'
        'fi\n'
        f'cp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job {JOB_ID}"\n')
    # submitit only checks that srun is on PATH; the job never runs here
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun must not run here" >&2; exit 1\n')
    for tool in ("scontrol", "sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir, calls


@pytest.fixture
def cli(fake_slurm, monkeypatch, run_main):
    """`levl-train ARGS` in this process, from the checkout (cluster/profiles/), with the fake
    SLURM first on PATH; returns returncode, stdout and stderr like subprocess.run."""

    monkeypatch.setenv("PATH", f"{fake_slurm[0]}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(ROOT)

    def run(*args: object, env: dict[str, str] | None = None) -> SimpleNamespace:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        return run_main("levl-train", *args)

    return run


def submit(cli, *args, env=None):
    return cli("submit", *args, env=env)


def assert_nothing_queued(fake_slurm, out: Path):
    _, calls = fake_slurm
    assert not calls.exists(), calls.read_text()
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_the_issues_command_gpus_on_the_cpu_profile_is_refused(cli, fake_slurm, shards,
                                                                tmp_path):
    """`submit vit_b16_datacomp_l --nodes 8 --gpus-per-node 8` picks the local CPU profile by
    default: the job would wait for 64 GPUs that do not exist."""
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "vit_b16_datacomp_l", "--nodes", "8",
                                 "--gpus-per-node", "8", "--data", shards, "--out", out))
    assert "--gpus-per-node 8 but profile 'local' (partition debug) has no GPUs" in line
    assert "cluster/profiles/example-gpu.toml" in line
    assert_nothing_queued(fake_slurm, out)


@pytest.mark.parametrize(("extra", "expected"), [
    (["--gpus-per-node", "16"], "--gpus-per-node 16 but the nodes of profile 'example-gpu' "
                                "(partition gpu) have 8"),
    (["--gpus-per-node", "8", "--set", "device=cpu"], "device=cpu would leave the job's 8 "
                                                      "GPU(s) per node idle"),
    (["--gpus-per-node", "0", "--set", "device=cuda"], "device=cuda, dist.backend=auto needs "
                                                       "GPUs but the job has none"),
])
def test_a_device_request_the_placement_cannot_serve_is_refused(cli, fake_slurm, shards,
                                                                 tmp_path, extra, expected):
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "micro_synthetic", "--profile", EXAMPLE_GPU,
                                 "--data", shards, "--out", out, "--set", "data.batch_size=16",
                                 *extra))
    assert expected in line
    assert_nothing_queued(fake_slurm, out)


def invalid_manifest(tmp_path: Path, shards: Path) -> tuple[Path, str]:
    bad = tmp_path / "edited" / "manifest.json"
    bad.parent.mkdir()
    data = json.loads(shards.read_text())
    data["num_samples"] += 1
    bad.write_text(json.dumps(data))
    return bad, f"manifest {bad}: num_samples is 49 but the shards hold 48"


def missing_shard(tmp_path: Path, shards: Path) -> tuple[Path, str]:
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in shards.parent.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "shard-000003.tar").unlink()
    return copy / "manifest.json", f"shard {copy / 'shard-000003.tar'} is missing"


@pytest.mark.parametrize("case", ["none", "no_such_file", "invalid", "missing_shard"])
def test_a_missing_or_invalid_manifest_is_refused(cli, fake_slurm, shards, tmp_path, case):
    """Read and validated with the loader's reader (schema, fingerprint, sample count, every
    shard present), not found wanting by the job after its wait in the queue."""
    out = tmp_path / "run"
    if case == "none":
        data, expected = [], "recipe micro_synthetic has no data; pass --data MANIFEST"
    elif case == "no_such_file":
        data, expected = ["--data", tmp_path / "nope.json"], f"manifest {tmp_path / 'nope.json'}"
    elif case == "invalid":
        manifest, expected = invalid_manifest(tmp_path, shards)
        data = ["--data", manifest]
    else:
        manifest, expected = missing_shard(tmp_path, shards)
        data = ["--data", manifest]
    line = one_error_line(submit(cli, "micro_synthetic", *data, "--out", out))
    assert expected in line
    assert_nothing_queued(fake_slurm, out)


def test_a_time_limit_shorter_than_one_checkpoint_interval_is_refused(cli, fake_slurm, shards,
                                                                      tmp_path):
    """100 steps x 6 s = 10 min, but 10 min - 2 (signal) - 5 (start-up) leaves 3: every
    attempt would be requeued before its first checkpoint."""
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "micro_synthetic", "--data", shards,
                                 "--out", out, "--time", "10", "--step-time", "6",
                                 "--set", "steps=1000", "--set", "ckpt_every=100"))
    assert ("time limit 10 min cannot reach a checkpoint: ckpt_every=100 steps × 6 s/step "
            "(--step-time) take 10 min") in line
    assert "--set ckpt_every=30 (or fewer)" in line
    assert_nothing_queued(fake_slurm, out)


def test_a_time_limit_with_no_room_after_start_up_is_refused_without_a_step_time(
        cli, fake_slurm, shards, tmp_path):
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "micro_synthetic", "--data", shards,
                                 "--out", out, "--time", "7"))
    assert "time limit 7 min leaves no time to train" in line and "--time 8 or more" in line
    assert_nothing_queued(fake_slurm, out)


def test_a_continued_runs_measured_step_time_is_checked_and_its_dir_left_untouched(
        cli, fake_slurm, shards, tmp_path):
    """Resubmitting a run: the step time its metrics.jsonl measured decides, and the refusal
    leaves every file of the run as it was."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 10, "step_time_s": 2.5}\n'
                                       '{"step": 20, "step_time_s": 30.0}\n{"step": 2')
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in out.rglob("*")}
    line = one_error_line(submit(cli, "micro_synthetic", "--data", shards,
                                 "--out", out, "--set", "steps=1000",
                                 "--set", "ckpt_every=50"))
    assert f"50 steps × 30 s/step (measured in {out}/metrics.jsonl)" in line
    _, calls = fake_slurm
    assert not calls.exists()
    assert {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in out.rglob("*")} == before


def test_the_queued_job_passes_cpus_per_task_to_srun(cli, fake_slurm, shards, tmp_path):
    """Slurm >= 22.05 does not hand sbatch's --cpus-per-task to srun: the script must pass it
    to srun itself, with --kill-on-bad-exit (a task that dies hard ends the step at once).
    The example GPU profile reaches sbatch whole."""
    out = tmp_path / "run"
    result = submit(cli, "micro_synthetic", "--profile", EXAMPLE_GPU, "--nodes", "2",
                    "--data", shards, "--out", out, "--set", "data.batch_size=16")
    assert result.returncode == 0, result.stderr
    script = (tmp_path / "submitted.sh").read_text()
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert re.search(r" --cpus-per-task 12( |$)", srun), srun
    assert " --kill-on-bad-exit=1" in srun, srun
    for flag in ("--cpus-per-task=12", "--gpus-per-node=8", "--nodes=2", "--ntasks-per-node=8",
                 "--partition=gpu", "--account=my-account", "--qos=normal", "--constraint=h100",
                 "--mem=768GB", "--time=2880", "--signal=USR2@120"):
        assert f"#SBATCH {flag}" in script, flag
    job = json.loads((out / "job.json").read_text())
    assert (job["job_id"], job["world_size"], job["profile"]) == (JOB_ID, 16, "example-gpu")
    assert f"submitted job {JOB_ID}" in result.stdout
    assert "note: no step time known, so ckpt_every=20 was not checked" in result.stdout


def test_a_job_slurm_refuses_leaves_no_run_dir_behind(cli, fake_slurm, shards, tmp_path):
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "micro_synthetic", "--data", shards,
                                 "--out", out, env={"SBATCH_FAILS": "1"}))
    assert "SLURM refused the job or is unreachable (sbatch: error: Batch job submission " \
           "failed: Invalid account)" in line
    assert not out.exists()


def test_the_example_gpu_profile_documents_every_key_the_loader_accepts():
    """Every ClusterProfile field appears in example-gpu.toml, each under a comment saying what
    it does, and the file loads."""
    text = EXAMPLE_GPU.read_text()
    keys = set(tomllib.loads(text))
    assert keys == {f.name for f in fields(ClusterProfile)} - {"name"}
    lines = text.splitlines()
    for key in keys:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
        assert lines[at - 1].startswith("# "), f"{key} has no comment above it"
    assert load_profile(str(EXAMPLE_GPU)).gpus_per_node == 8


@pytest.mark.parametrize(("text", "expected"), [
    ("partition = 1\n", "partition must be a string, got 1"),
    ("mem_per_task_gb = 0\n", "mem_per_task_gb must be a positive number, got 0"),
    ('gpus_per_node = "8"\n', "gpus_per_node must be an integer >= 0, got '8'"),
])
def test_a_profile_value_of_the_wrong_type_is_refused(tmp_path, text, expected):
    site = tmp_path / "site.toml"
    site.write_text(text)
    with pytest.raises(TrainError, match=re.escape(expected)):
        load_profile(str(site))


@pytest.mark.parametrize(("local_rank", "visible", "index"), [
    (3, 1, 0),  # the site binds one GPU per task: each task's only device is cuda:0
    (3, 8, 3),  # every task sees the node's 8 GPUs: cuda:LOCAL_RANK
    (0, 8, 0),
])
def test_the_cuda_device_follows_the_sites_gpu_binding(local_rank, visible, index):
    assert cuda_device_index(DistEnv(local_rank=local_rank), visible=visible) == index


def test_more_tasks_than_visible_gpus_is_one_line():
    with pytest.raises(TrainError, match="local rank 3 but this task sees 2 GPU"):
        cuda_device_index(DistEnv(local_rank=3), visible=2)


def test_an_epoch_longer_than_a_checkpoint_interval_gets_a_note(cli, fake_slurm, shards,
                                                                 tmp_path):
    """48 samples in batches of 8 make a 6-step epoch; with a checkpoint every 2 steps a resume
    may read 5 batches again. An epoch of one interval (16 samples) needs no note."""
    common = ("micro_synthetic", "--data", shards, "--set", "data.batch_size=8",
              "--set", "ckpt_every=2", "--set", "steps=20")
    result = submit(cli, *common, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert ("note: an epoch (data.epoch_samples=48) is longer than a checkpoint interval "
            "(ckpt_every=2 steps of 8): a resume reads up to 40 samples a rank again before "
            "its first batch; --set data.epoch_samples=16 makes each checkpoint an epoch's "
            "end") in result.stdout
    aligned = submit(cli, *common, "--set", "data.epoch_samples=16", "--out", tmp_path / "run2")
    assert aligned.returncode == 0, aligned.stderr
    assert "longer than a checkpoint interval" not in aligned.stdout


@pytest.mark.parametrize("recipe", ["vit_b16_datacomp_l", "vit_b16_cc12m"])
@pytest.mark.parametrize("smoke", [False, True])
def test_the_b16_recipes_end_an_epoch_at_every_checkpoint(recipe, smoke):
    """On DataComp-L's 1.28B samples and 16 ranks the manifest-sized epoch would make a resume
    read up to ~80M samples a rank again; the recipes' epoch is one checkpoint interval."""
    datacomp = SimpleNamespace(data={"format": "webdataset"}, num_samples=1_280_000_000)
    cfg = get_recipe(recipe, smoke=smoke)
    assert cfg.data.epoch_samples == cfg.ckpt_every * cfg.data.batch_size
    ranks = 16 if not smoke else 2
    assert resume_reads_note(cfg, ranks, datacomp) is None
    unaligned = dataclasses.replace(cfg, steps=10 * cfg.ckpt_every,  # the smoke's 4 steps
                                    data=dataclasses.replace(cfg.data, epoch_samples=None))
    assert "a resume reads up to" in resume_reads_note(unaligned, ranks, datacomp)


@pytest.mark.parametrize("change", [
    {"steps": 2},  # no checkpoint before the last step: nothing to resume from
    {"data.sampling": "passes"},  # an epoch is a pass by design: a shorter one would cut it
    {"data.epoch_samples": 16},  # one interval: every checkpoint is an epoch's end
])
def test_the_epoch_note_is_silent_where_a_resume_reads_nothing_it_could_avoid(change):
    """48 samples in batches of 8, a checkpoint every 2 steps of 200: noted, but not with any
    one of these changes."""
    shards = SimpleNamespace(data={"format": "webdataset"}, num_samples=48)
    base = apply_overrides(get_recipe("micro_synthetic"),
                           ["data.batch_size=8", "ckpt_every=2", "steps=200"])
    assert resume_reads_note(base, 1, shards) is not None
    changed = apply_overrides(base, [f"{key}={value}" for key, value in change.items()])
    assert resume_reads_note(changed, 1, shards) is None


def test_passes_over_too_few_shards_for_the_ranks_are_refused(cli, fake_slurm, shards, tmp_path):
    """6 shards over 16 ranks (2 nodes of the example GPU site): with `passes` ranks 6-15 have
    no shard of their own and the job would fail at its first step. Resampled shards serve
    every rank (`test_the_queued_job_passes_cpus_per_task_to_srun`)."""
    out = tmp_path / "run"
    line = one_error_line(submit(cli, "micro_synthetic", "--profile", EXAMPLE_GPU, "--nodes", "2",
                                 "--data", shards, "--out", out, "--set", "data.batch_size=16",
                                 "--set", "data.sampling=passes"))
    assert ("data.sampling=passes splits the 6 shards of " in line
            and "over 16 ranks: rank 6's 0 shards can fill no worker's micro-batch of 1 "
                "(at most 0)" in line and "--set data.sampling=resampled" in line), line
    assert_nothing_queued(fake_slurm, out)


@pytest.mark.parametrize(("workers", "refused"), [(1, False), (2, False), (3, True)])
def test_passes_refused_only_where_no_loader_worker_can_fill_a_batch(workers, refused):
    """One rank, shards of 7, 1 and 1 samples, micro-batch 8. One worker reads all 9 samples;
    two split the shards 2 + 1, and in the orders that give one worker the 7 and a 1 it fills a
    batch (only what fails in every order is refused); three hold at most 7 each, in any order."""
    manifest = SimpleNamespace(data={"format": "webdataset"}, path="m.json", shards=[
        SimpleNamespace(num_samples=n) for n in (7, 1, 1)])
    cfg = apply_overrides(get_recipe("micro_synthetic"), [
        "data.sampling=passes", "data.batch_size=8", f"data.num_workers={workers}"])
    if not refused:
        check_passes(cfg, manifest, world_size=1)
        return
    with pytest.raises(TrainError, match=r"rank 0's 3 shards, split over 3 loader workers, can "
                                         r"fill no worker's micro-batch of 8 \(at most 7\)"):
        check_passes(cfg, manifest, world_size=1)
