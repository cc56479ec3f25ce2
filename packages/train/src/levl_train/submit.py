"""SLURM submission through submitit: one task per GPU (one per node on CPU-only nodes).

The job is a pickled `TrainJob`. On each task it exports the torch.distributed rendezvous from
SLURM's variables (first node's address, a port derived from the job id, global and local
ranks) and calls the same `train` a local run uses. On preemption or timeout SLURM sends USR2;
submitit then calls `TrainJob.checkpoint`, which requeues the same job: `train` finds the run
dir's last checkpoint and resumes from it.

A recipe whose engine is `torch` (one process) submitted on more than one rank runs under
DeepSpeed with the recipe's ZeRO stage instead (at stage 0: plain data parallelism, the same
AdamW on the same global batch), which is what asking for N nodes means (`resolve_engine`).

The code that runs is a snapshot copied into the run dir at submission, so editing the tree
while the job waits in the queue cannot change what it trains. Each submission snapshots into,
and logs to, folders of its own that it creates empty (`new_submission`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from levl_model.checkpoint import LATEST_FILE
from levl_train.config import TrainConfig, config_from_dict
from levl_train.errors import TrainError
from levl_train.preflight import SIGNAL_DELAY_S, StepTime, check_submission
from levl_train.profiles import ClusterProfile
from levl_train.rundir import write_json_atomic

SNAPSHOT_PACKAGES = ("levl_data", "levl_model", "levl_train")
JOB_FILE = "job.json"


@dataclass(frozen=True)
class Placement:
    """How many nodes and tasks a job takes, after the profile and the flags are combined."""

    nodes: int
    gpus_per_node: int

    @property
    def tasks_per_node(self) -> int:
        return max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


class TrainJob:
    """The callable submitit pickles; `checkpoint` makes USR2 a requeue, not a failure."""

    def __init__(self, config: dict[str, Any], run_dir: str, threads: int) -> None:
        self.config = config
        self.run_dir = run_dir
        self.threads = threads

    def __call__(self) -> str:
        import submitit

        env = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        task = describe_task(env.rank, env.world_size, Path(self.run_dir))
        print(task, flush=True)
        print(task, file=sys.stderr, flush=True)  # where this attempt's part of the log starts
        from levl_train.loop import train

        return str(train(config_from_dict(self.config), Path(self.run_dir)))

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Requeue from the run's last periodic checkpoint; no checkpoint is written here.

        submitit calls this from its USR2 handler on global rank 0 only, between two arbitrary
        bytecodes of the training step (mid-backward, mid-optimizer update, or just after a
        collective the other ranks are still inside), then exits. A checkpoint is a collective
        save of a consistent step on every rank, which this point cannot give: what the job
        loses is at most `ckpt_every` steps, so size `ckpt_every` to the site's preemption
        notice. A job signalled before its first checkpoint has nothing to resume: the requeued
        job starts the run again from step 0 (`RunDir.restart`).
        """
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.config, self.run_dir, self.threads))


def describe_task(rank: int, world_size: int, run_dir: Path) -> str:
    """One line per task in its SLURM log: which rank runs where, which attempt, from where."""
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0")) + 1
    latest = run_dir / LATEST_FILE
    start = f"resuming from {latest.read_text().strip()}" if latest.is_file() else "from step 0"
    return (f"levl: rank {rank} of {world_size} on {node}, job "
            f"{os.environ.get('SLURM_JOB_ID', '?')} attempt {attempt}, {start}")


def resolve_engine(cfg: TrainConfig, placement: Placement,
                   explicit: bool) -> tuple[TrainConfig, str | None]:
    """engine=torch trains in one process; on more than one rank the run becomes DeepSpeed with
    the recipe's ZeRO stage (at stage 0: the same AdamW update on the same global batch, data
    parallel). Returns the config and a note saying so, recorded in config.json and job.json;
    an explicit `--set engine=torch` with several ranks is refused."""
    if cfg.engine != "torch" or placement.world_size <= 1:
        return cfg, None
    ranks = (f"--nodes {placement.nodes} × {placement.tasks_per_node} task(s) gives "
             f"{placement.world_size} ranks")
    if explicit:
        raise TrainError(f"--set engine=torch runs one process but {ranks}; drop the override "
                         "(submit then uses engine=deepspeed) or use --nodes 1")
    return dataclasses.replace(cfg, engine="deepspeed"), (
        f"engine: deepspeed, ZeRO-{cfg.dist.zero_stage} (the recipe's engine=torch runs one "
        f"process; {ranks})")


@dataclass(frozen=True)
class Submission:
    """One submission's folders in the run dir: its code snapshot (the job's PYTHONPATH) and
    submitit's folder (the pickled job, the tasks' logs and result pickles)."""

    code: Path
    slurm: Path


def new_submission(run_dir: Path) -> Submission:
    """RUN/code/NAME and RUN/slurm/NAME, created here and so empty. A run dir can come from
    elsewhere (one copied to continue it) and is untrusted: a `sitecustomize.py`, a `torch/` or
    a forged `.pyc` left in a reused code/ would run in every task from the PYTHONPATH, and a
    `J_0_result.pkl` left in a reused slurm/ would be unpickled by `--wait` if SLURM gave this
    job the id J again (ids restart when a controller's state is reset)."""
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
    code, slurm = (run_dir.absolute() / folder / name for folder in ("code", "slurm"))
    for folder in (code, slurm):  # the umask's mode and the parent's group, as any mkdir
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()  # refuses one that exists: nothing planted can be in it
    return Submission(code, slurm)


def snapshot_code(code: Path, deepspeed_dir: Path | None = None) -> None:
    """Copy the levl packages the job imports into `code` (read from there by the job), and
    the ZeRO config files into `code`/cluster/deepspeed/, where `ds_config` looks first."""
    for name in SNAPSHOT_PACKAGES:
        source = Path(__import__(name).__file__).parent
        shutil.copytree(source, code / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if deepspeed_dir is not None:
        from levl_train.ds_config import CONFIG_DIR

        shutil.copytree(deepspeed_dir, code / CONFIG_DIR)


def deepspeed_files(cfg: TrainConfig) -> Path | None:
    """The checkout's cluster/deepspeed/ a DeepSpeed job reads its ZeRO file from (found now, so
    a missing one is refused before anything is queued or written); None for engine=torch or
    an explicit dist.deepspeed_config, which the job reads from its own path."""
    if cfg.engine != "deepspeed" or cfg.dist.deepspeed_config:
        return None
    from levl_train.ds_config import default_config_path

    return default_config_path(cfg.dist.zero_stage).parent


def build_executor(folder: Path, profile: ClusterProfile, placement: Placement, code: Path):
    """submitit's executor for the job: the profile's site settings, one task per GPU."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    optional = {
        "slurm_partition": profile.partition,
        "slurm_account": profile.account,
        "slurm_qos": profile.qos,
        "slurm_constraint": profile.constraint,
    }
    executor.update_parameters(
        nodes=placement.nodes,
        tasks_per_node=placement.tasks_per_node,
        cpus_per_task=profile.cpus_per_task,
        # Slurm >= 22.05 no longer hands sbatch's --cpus-per-task down to srun: without this,
        # each task's step gets one CPU, whatever the allocation holds. --kill-on-bad-exit:
        # a task that dies without a word (OOM killer, segfault) ends the job step at once,
        # not after its NCCL peers' collective timeout (failures.outlive_rank0 keeps rank 0's
        # result when a rank fails with one).
        slurm_srun_args=["--cpus-per-task", str(profile.cpus_per_task), "--kill-on-bad-exit=1"],
        timeout_min=profile.time_min,
        slurm_signal_delay_s=SIGNAL_DELAY_S,
        slurm_setup=[f"export PYTHONPATH={code}${{PYTHONPATH:+:$PYTHONPATH}}"],
        **({"gpus_per_node": placement.gpus_per_node} if placement.gpus_per_node else {}),
        **({"mem_gb": profile.mem_per_task_gb * placement.tasks_per_node}
           if profile.mem_per_task_gb else {}),
        **{k: v for k, v in optional.items() if v},
    )
    return executor


def check_placement(cfg: TrainConfig, placement: Placement) -> None:
    """The global batch must split evenly over the ranks, before anything is queued."""
    if placement.nodes < 1:
        raise TrainError(f"--nodes must be >= 1, got {placement.nodes}")
    if cfg.data.batch_size % placement.world_size:
        raise TrainError(
            f"data.batch_size {cfg.data.batch_size} does not split over {placement.world_size} "
            f"ranks ({placement.nodes} nodes × {placement.tasks_per_node}); choose a multiple "
            f"with --set data.batch_size=N"
        )


def check_controller() -> None:
    """`scontrol ping` first: an unreachable controller is one line, not sbatch's retries."""
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise TrainError("no SLURM client here (scontrol not on PATH); submit from a login "
                         "node, or start the local test cluster with cluster/local/start") from None
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        status = (ping.stdout.strip().splitlines() or ping.stderr.strip().splitlines() or ["?"])[0]
        raise TrainError(f"SLURM controller unreachable ({status}); check `scontrol ping`, "
                         "SLURM_CONF, or start the local cluster with cluster/local/start")


def submit(cfg: TrainConfig, run_dir: Path, profile: ClusterProfile, placement: Placement,
           step_time: StepTime | None = None):
    """Queue the run; returns the submitit job and the notes worth printing. Every refusal
    comes before the run dir is touched, and a submission SLURM refuses takes back the run dir
    it created. RUN/job.json records what was submitted."""
    check_placement(cfg, placement)
    notes = check_submission(cfg, profile, placement.gpus_per_node, placement.world_size,
                             step_time)
    deepspeed_dir = deepspeed_files(cfg)
    check_controller()
    created = not run_dir.exists()
    try:
        job, submission = queue_job(cfg, run_dir, profile, placement, deepspeed_dir)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    record = {"job_id": job.job_id, "recipe": cfg.recipe, "profile": profile.name,
              "nodes": placement.nodes, "tasks_per_node": placement.tasks_per_node,
              "world_size": placement.world_size, "engine": cfg.engine,
              "logs": f"slurm/{submission.slurm.name}",
              "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": sys.argv}
    write_json_atomic(run_dir / JOB_FILE, record)
    return job, notes


def queue_job(cfg: TrainConfig, run_dir: Path, profile: ClusterProfile, placement: Placement,
              deepspeed_dir: Path | None):
    """Snapshot the code into the run dir and hand the job to sbatch; returns the job and its
    submission's folders (taken back if sbatch refuses it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    submission = new_submission(run_dir)
    try:
        snapshot_code(submission.code, deepspeed_dir)
        executor = build_executor(submission.slurm, profile, placement, submission.code)
        job = sbatch(executor, TrainJob(cfg.to_dict(), str(run_dir), profile.cpus_per_task))
    except Exception:  # not an interrupt: sbatch may have queued the job that needs them
        for folder in (submission.code, submission.slurm):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return job, submission


def sbatch(executor, job: TrainJob):
    """executor.submit, a refusal as one TrainError line."""
    from submitit.core.utils import FailedJobError

    try:
        # submitit echoes a refusing sbatch's stderr; its first error line is in ours instead
        with contextlib.redirect_stderr(io.StringIO()):
            return executor.submit(job)
    except (FailedJobError, subprocess.CalledProcessError, OSError) as err:
        raise TrainError(f"SLURM refused the job or is unreachable ({_first_line(err)}); "
                         "check `sinfo` and the profile") from None


def _first_line(err: BaseException | str) -> str:
    text = str(err).strip() or type(err).__name__
    for line in text.splitlines():
        if "error" in line.lower():
            return line.strip()
    return text.splitlines()[0]


def wait_for_result(job) -> str:
    """Block until the job ends; a failed job is one line pointing at its logs.

    Only rank 0's outcome is read: after a requeue, another rank's result file can still hold
    the error that rank hit when rank 0 left for the requeue (a broken collective) until its
    next attempt overwrites it, while rank 0 writes one only when the whole run ends (the
    ranks finish together: the last checkpoint is a collective). Rank 0 has none when srun
    killed it (--kill-on-bad-exit) for another task's failure: the tasks' logs then say why."""
    from submitit.core.utils import UncompletedJobError

    rank0 = job.task(0)
    try:
        return rank0.result()
    except UncompletedJobError as err:
        if rank0.paths.result_pickle.exists():  # rank 0's own exception
            cause = _raised(str(err))
        else:
            logs = [(rank, job.task(rank).paths.stderr) for rank in range(job.num_tasks)]
            cause = logged_failure(logs) or f"no task logged a cause; SLURM state {job.state}"
        raise TrainError(f"job {job.job_id} failed ({cause}); its logs are in "
                         f"{job.paths.folder}") from None


TRACEBACK = "Traceback (most recent call last):"
ATTEMPT = re.compile(r"^levl: rank \d+ of \d+ on ")  # describe_task's line: an attempt starts
RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s?")  # torch's prefix on a group member's traceback
LAUNCHER = ("srun:", "slurmstepd")  # SLURM's own lines in a task's log


def logged_failure(logs: list[tuple[int, Path]]) -> str | None:
    """What the tasks' stderr logs, (rank, path) in rank order, say ended the job's last attempt
    (a log accumulates a requeued job's attempts: only the part after its last `levl: rank R of
    W` line counts): rank 0's report of a peer's failure (its `error:` line) if any log has
    one, else the exception of the first traceback in rank order (submitit logs a task's): a
    rank that failed before the group formed could tell rank 0 nothing."""
    attempts = [(rank, last_attempt(log)) for rank, log in logs if log.is_file()]
    for _, lines in attempts:
        reported = [line for line in lines if line.startswith("error: ")]
        if reported:
            return reported[-1].removeprefix("error: ")
    for rank, lines in attempts:
        if TRACEBACK in lines:
            after = lines[len(lines) - lines[::-1].index(TRACEBACK):]
            raised = _raised("\n".join(line for line in after if not line.startswith(LAUNCHER)))
            return raised if rank == 0 else f"rank {rank} failed: {raised}"
    return None


def last_attempt(log: Path) -> list[str]:
    """The lines of a task's log from its last attempt's start, tqdm's redraws and torch's rank
    prefixes taken off."""
    lines = [RANK_PREFIX.sub("", part) for line in log.read_text(errors="replace").splitlines()
             for part in line.split("\r")]
    starts = [i for i, line in enumerate(lines) if ATTEMPT.match(line)]
    return lines[starts[-1]:] if starts else lines


EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*): (?P<message>.+)$")


def _raised(text: str) -> str:
    """The exception a traceback ends in: its last `Name: message` line (a chained traceback
    lists the cause first: a broken collective, say, before the PeerFailed naming the rank that
    broke it); levl's own errors by their message alone."""
    found = [m for m in map(EXCEPTION_LINE.match, text.splitlines()) if m]
    if not found:
        return _first_line(text)
    name, message = found[-1]["name"], found[-1]["message"]
    return message if name.startswith("levl_") else f"{name}: {message}"
