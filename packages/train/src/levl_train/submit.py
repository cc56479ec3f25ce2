"""SLURM submission through submitit: one task per GPU (one per node on CPU-only nodes).

The job is a pickled `TrainJob`. On each task it exports the torch.distributed rendezvous from
SLURM's variables (first node's address, a port derived from the job id, global and local
ranks) and calls the same `train` a local run uses. On preemption or timeout SLURM sends USR2;
submitit then calls `TrainJob.checkpoint`, which requeues the same job: `train` finds the run
dir's last checkpoint and resumes from it.

The code that runs is a snapshot copied into the run dir at submission, so editing the tree
while the job waits in the queue cannot change what it trains.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from levl_train.config import TrainConfig, config_from_dict
from levl_train.errors import TrainError
from levl_train.profiles import ClusterProfile

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

        submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        from levl_train.loop import train

        return str(train(config_from_dict(self.config), Path(self.run_dir)))

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.config, self.run_dir, self.threads))


def snapshot_code(run_dir: Path) -> Path:
    """Copy the levl packages the job imports into RUN/code/ (read from there by the job)."""
    code = run_dir / "code"
    for name in SNAPSHOT_PACKAGES:
        source = Path(__import__(name).__file__).parent
        shutil.copytree(source, code / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return code


def build_executor(folder: Path, profile: ClusterProfile, placement: Placement, code: Path):
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
        timeout_min=profile.time_min,
        slurm_signal_delay_s=120,
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


def submit(cfg: TrainConfig, run_dir: Path, profile: ClusterProfile, placement: Placement):
    """Queue the run; returns the submitit job. RUN/job.json records what was submitted."""
    check_placement(cfg, placement)
    check_controller()
    run_dir.mkdir(parents=True, exist_ok=True)
    code = snapshot_code(run_dir)
    executor = build_executor(run_dir / "slurm", profile, placement, code)
    from submitit.core.utils import FailedJobError

    try:
        job = executor.submit(TrainJob(cfg.to_dict(), str(run_dir), profile.cpus_per_task))
    except (FailedJobError, subprocess.CalledProcessError, OSError) as err:
        raise TrainError(f"SLURM refused the job or is unreachable ({_first_line(err)}); "
                         "check `sinfo` and the profile") from None
    record = {"job_id": job.job_id, "recipe": cfg.recipe, "profile": profile.name,
              "nodes": placement.nodes, "tasks_per_node": placement.tasks_per_node,
              "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": sys.argv}
    (run_dir / JOB_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return job


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    for line in text.splitlines():
        if "error" in line.lower():
            return line.strip()
    return text.splitlines()[0]


def wait_for_result(job, run_dir: Path) -> str:
    """Block until the job ends; a failed job is one line pointing at its logs."""
    from submitit.core.utils import UncompletedJobError

    try:
        return job.result()
    except UncompletedJobError as err:
        raise TrainError(f"job {job.job_id} failed ({_first_line(err)}); its logs are in "
                         f"{run_dir / 'slurm'}") from None
