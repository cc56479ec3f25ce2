"""`levl-train status RUN_DIR`: where a run is — its SLURM job state and its last logged step.

Reads only what the run dir and SLURM's accounting already hold, so it is safe to call at any
time, from any machine that sees the run dir, while the job runs or long after.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from levl_train.collapse import describe
from levl_train.errors import TrainError
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
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    with open(path) as f:
        for line in f:
            if line.strip():
                last = line
    return json.loads(last) if last else None


def run_status(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise TrainError(f"run dir {run_dir}: no such directory")
    job_path = run_dir / JOB_FILE
    job = json.loads(job_path.read_text()) if job_path.is_file() else None
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
