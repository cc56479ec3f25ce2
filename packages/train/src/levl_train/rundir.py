"""The run directory: resolved config, metrics log, checkpoints, and the `latest` pointer.

    RUN/config.json  RUN/metrics.jsonl  RUN/checkpoints/step_0000100/  RUN/latest
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from levl_model.jsontext import parse_json
from levl_train.errors import TrainError

CONFIG_FILE = "config.json"
# What `levl-train submit` puts in a run dir before the job itself creates the run.
SUBMISSION_ENTRIES = frozenset({"slurm", "code", "job.json"})


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.made_dir = False  # set by `create`: whether this run made the directory itself

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def create(self, config: dict[str, Any]) -> None:
        """Start a new run; refuse a directory that already holds one rather than mix two."""
        if (self.path / "config.json").exists():
            raise TrainError(
                f"run dir {self.path} already holds a run; pass another --out or remove it"
            )
        if self.path.exists() and any(
            p.name not in SUBMISSION_ENTRIES for p in self.path.iterdir()
        ):
            raise TrainError(f"run dir {self.path} is not empty; pass an empty or new --out")
        self.made_dir = not self.path.exists()
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / "config.json", config)

    def discard_new_run(self) -> None:
        """Undo `create` for a run that failed before its first step, so the dir is as it was
        (absent, empty, or holding only a submission's entries) and the same command can be
        rerun; a half-made run dir would instead be refused as 'already holds a run'."""
        for entry in self.path.iterdir():
            if entry.name in SUBMISSION_ENTRIES:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if self.made_dir and not any(self.path.iterdir()):
            self.path.rmdir()

    def restart(self) -> Path:
        """Start over a run whose earlier attempt stopped before its first checkpoint: its
        files (metrics, TensorBoard events, unfinished checkpoints) move to
        RUN/unfinished/attempt-N/ so they neither mix with the new attempt's nor get lost."""
        kept = SUBMISSION_ENTRIES | {"config.json", "unfinished"}
        n = 1
        while (self.path / "unfinished" / f"attempt-{n}").exists():
            n += 1
        target = self.path / "unfinished" / f"attempt-{n}"
        target.mkdir(parents=True)
        for entry in self.path.iterdir():
            if entry.name not in kept:
                entry.rename(target / entry.name)
        self.checkpoints.mkdir()
        return target

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}"

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def mark_latest(self, ckpt_dir: Path) -> None:
        """Point `latest` at a finished checkpoint (atomic rename, so never half written)."""
        tmp = self.path / "latest.tmp"
        tmp.write_text(str(ckpt_dir.relative_to(self.path)) + "\n")
        os.replace(tmp, self.path / "latest")

    def latest_checkpoint(self) -> str | None:
        """What `latest` points at (relative to the run dir), or None before the first."""
        latest = self.path / "latest"
        return latest.read_text().strip() if latest.is_file() else None

    def prune(self, keep_last: int) -> None:
        """Keep only the newest `keep_last` checkpoints."""
        finished = sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir())
        for old in finished[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old)


def metrics_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    """RUN/metrics.jsonl's complete records, newest first: a line being appended while we read
    (or cut short by a killed job) is not one, and is passed over."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    with open(path, "rb") as f:
        lines = [line for line in f if line.strip()]
    for line in reversed(lines):
        try:
            record = parse_json(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_config(run_dir: Path) -> dict[str, Any]:
    """RUN/config.json parsed, or one TrainError naming the file: a run dir copied while being
    written, or edited by hand, must not surface as a JSON traceback at resume."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        config = parse_json(path.read_bytes())
    except OSError as exc:
        raise TrainError(f"{path}: cannot read it ({exc.strerror}); pass the --out of a run") \
            from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise TrainError(f"{path}: not valid JSON ({exc}); the run dir is damaged: restore "
                         "config.json from the latest checkpoint's metadata.json `recipe`, or "
                         "pass another --out") from None
    if not isinstance(config, dict):
        raise TrainError(f"{path}: not a JSON object; pass the --out of a run")
    return config
