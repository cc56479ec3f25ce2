"""Where rank 0 sends each log record: RUN/metrics.jsonl (always), TensorBoard event files in
RUN/tensorboard/ (`log.tensorboard`, on by default) and Weights & Biases (`log.wandb_project`).

The JSON line keeps every field as logged (None, nested skip counts); the trackers get the
numeric scalars, under `perf/` for throughput fields and `train/` for the rest, skip counts as
`skipped/<reason>`. A resumed run writes to the same TensorBoard dir with `purge_step` set, so
steps a killed run logged past its checkpoint are hidden, and continues the same W&B run (its
id is kept in RUN/wandb_id).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from levl_train.config import LogConfig
from levl_train.errors import TrainError
from levl_train.rundir import RunDir
from levl_train.throughput import PERF_FIELDS

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id"


def tracker_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numeric values as tracker tags (bools, None and strings are left out)."""
    scalars: dict[str, float] = {}
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            scalars.update({f"{key}/{sub}": float(v) for sub, v in value.items()
                            if _is_number(v)})
        elif _is_number(value):
            scalars[f"{'perf' if key in PERF_FIELDS else 'train'}/{key}"] = float(value)
    return scalars


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class MetricSinks:
    """Opened on rank 0 only; `close` flushes the trackers (call it even when training fails)."""

    def __init__(self, run_dir: RunDir, cfg: LogConfig, config: dict[str, Any],
                 start_step: int) -> None:
        self.run_dir = run_dir
        self.tensorboard = self.wandb = None
        try:
            if cfg.tensorboard:
                self.tensorboard = _open_tensorboard(run_dir.path, start_step)
            if cfg.wandb_project:
                self.wandb = _open_wandb(run_dir.path, cfg, config)
        except BaseException:
            self.close()  # no TensorBoard writer thread left behind by a failed W&B start
            raise

    def log(self, record: dict[str, Any]) -> None:
        self.run_dir.log(record)
        scalars = tracker_scalars(record)
        if self.tensorboard is not None:
            for tag, value in scalars.items():
                self.tensorboard.add_scalar(tag, value, global_step=record["step"])
        if self.wandb is not None:
            self.wandb.log(scalars, step=record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _open_tensorboard(run_path: Path, start_step: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_path / TENSORBOARD_DIR),
                         purge_step=start_step + 1 if start_step else None)


def _open_wandb(run_path: Path, cfg: LogConfig, config: dict[str, Any]):
    """One W&B run per run dir, continued on resume; WANDB_MODE=offline writes RUN/wandb/ only
    (upload later with `wandb sync RUN/wandb/offline-run-*`)."""
    import wandb

    id_file = run_path / WANDB_ID_FILE
    if not id_file.is_file():
        id_file.write_text(secrets.token_hex(8) + "\n")
    try:
        return wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity,
                          name=run_path.name, id=id_file.read_text().strip(), resume="allow",
                          dir=str(run_path), config=config)
    except Exception as exc:  # wandb raises its own types for auth, network and config
        mode = os.environ.get("WANDB_MODE", "online")
        raise TrainError(f"W&B could not start (mode {mode}: {str(exc).splitlines()[0]}); run "
                         "`wandb login`, set WANDB_MODE=offline, or unset log.wandb_project"
                         ) from exc
