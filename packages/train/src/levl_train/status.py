"""`levl-train status RUN_DIR`: where a run is — its SLURM job state and its last logged step.

Reads only what the run dir and SLURM's accounting already hold, so it is safe to call at any
time, from any machine that sees the run dir, while the job runs or long after.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from levl_model.jsontext import parse_json
from levl_train.collapse import describe
from levl_train.errors import TrainError
from levl_train.rundir import CONFIG_FILE, metrics_records
from levl_train.submit import JOB_FILE

LOSS_KEYS = ("loss", "pred", "sigreg_v", "sigreg_t", "contrastive")


def job_states(job_id: str, since: str | None = None) -> list[str]:
    """SLURM's state of each attempt of the job (the allocation, not its steps), oldest first:
    a requeued job shows REQUEUED, then its later attempts. `since` (the submission time)
    leaves out older jobs that had the same id before the controller's state was reset.
    ["UNKNOWN"] when sacct can't say, ["PENDING"] before accounting has the job."""
    command = ["sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State"]
    if since:
        command += ["-S", sacct_time(since)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ["UNKNOWN"]
    states = [line.split()[0] for line in out.splitlines() if line.strip()]
    return states or ["PENDING"]


def sacct_time(iso: str) -> str:
    """An ISO timestamp with a zone as sacct's local `YYYY-MM-DDTHH:MM:SS`."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def last_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The last complete record of metrics.jsonl: a line being appended while we read (or cut
    short by a killed job) is not one, so the one before it is shown."""
    return next(metrics_records(run_dir), None)


def check_run_dir(run_dir: Path) -> None:
    """A run dir holds config.json (`levl-train run`) or job.json (`levl-train submit`): any
    other directory would show as an empty LOCAL run, which a typo in the path must not."""
    if not run_dir.is_dir():
        raise TrainError(f"run dir {run_dir}: no such directory")
    if not any((run_dir / name).is_file() for name in (CONFIG_FILE, JOB_FILE)):
        raise TrainError(f"{run_dir} is not a run dir (no {CONFIG_FILE} or {JOB_FILE}); pass the "
                         "--out of levl-train run or submit")


def read_job(run_dir: Path) -> dict[str, Any] | None:
    """job.json written by `levl-train submit`, or None for a run started here."""
    path = run_dir / JOB_FILE
    if not path.is_file():
        return None
    try:
        job = parse_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: unreadable ({exc}); it is written by levl-train submit, "
                         "resubmit or remove it") from None
    if not isinstance(job, dict) or not isinstance(job.get("job_id"), str):
        raise TrainError(f"{path}: no job_id; it is written by levl-train submit, resubmit or "
                         "remove it")
    return job


def run_status(run_dir: Path) -> dict[str, Any]:
    check_run_dir(run_dir)
    job = read_job(run_dir)
    metrics = last_metrics(run_dir) or {}
    latest = run_dir / "latest"
    states = job_states(job["job_id"], job.get("submitted_at")) if job else ["LOCAL"]
    return {
        "run_dir": str(run_dir),
        "job_id": job and job["job_id"],
        "state": states[-1],
        "requeued": states.count("REQUEUED"),
        "step": metrics.get("step"),
        "samples_seen": metrics.get("samples_seen"),
        "losses": {k: metrics[k] for k in LOSS_KEYS if k in metrics},
        "samples_per_s": metrics.get("samples_per_s"),
        "collapse": metrics.get("collapse"),
        "latest_checkpoint": latest.read_text().strip() if latest.is_file() else None,
    }


def format_status(status: dict[str, Any]) -> str:
    losses = "  ".join(f"{k}={v:.4f}" for k, v in status["losses"].items()) or "-"
    rate = status["samples_per_s"]
    lines = [
        f"run        {status['run_dir']}",
        f"job        {status['job_id'] or '-'}  {status['state']}"
        + (f"  (requeued {status['requeued']}×)" if status["requeued"] else ""),
        f"step       {status['step'] if status['step'] is not None else '-'}"
        f"  samples seen {status['samples_seen'] if status['samples_seen'] is not None else '-'}",
        f"losses     {losses}",
        f"throughput {f'{rate:.1f} samples/s' if rate else '-'}",
        f"checkpoint {status['latest_checkpoint'] or '-'}",
    ]
    if status.get("collapse"):
        lines.append(f"COLLAPSE   {describe(status['collapse'])}")
    return "\n".join(lines)
