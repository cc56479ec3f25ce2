"""Exact resume: what a checkpoint's `train_state/` holds beside the consolidated weights, and
how a run dir is recognised as one to continue.

    train_state/position.json    step, samples seen, data stream position, world size, engine,
                                 the bad samples skipped so far
    train_state/rng_rankN.json   every RNG a rank draws from (python, numpy, torch, cuda)
    train_state/reader_rankN.json  where a rank's data loader stands (BatchStream.rank_state)
    train_state/optimizer.pt     torch engine: AdamW moments (torch.load weights_only)
    train_state/engine/          DeepSpeed engine: module + ZeRO optimizer partitions

Writing goes to a staging dir that `save_checkpoint` moves into the checkpoint before its atomic
rename, so `latest` only ever points at a checkpoint that can resume.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from levl_model.checkpoint import LATEST_FILE, TRAIN_STATE_DIR, read_metadata, resolve_checkpoint
from levl_model.errors import CheckpointError
from levl_model.jsontext import parse_json
from levl_train.config import config_from_dict
from levl_train.errors import TrainError
from levl_train.rundir import CONFIG_FILE, read_config, write_json_atomic

POSITION_FILE = "position.json"
OLDER_CHECKPOINT = "resume from an older checkpoint by editing the run dir's latest file"


@dataclass(frozen=True)
class Position:
    """Where a run stands after `step` optimizer steps; the world size and engine are kept so a
    resume with a different layout is refused instead of silently diverging."""

    step: int
    samples_seen: int
    stream: dict[str, int]
    world_size: int
    engine: str
    zero_stage: int
    skipped: dict[str, int] = field(default_factory=dict)  # bad samples, every rank (skips.py)


def rng_state() -> dict[str, Any]:
    """JSON-able RNG states (no pickle in checkpoints)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_kind, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def write_position(state_dir: Path, position: Position) -> None:
    write_json_atomic(state_dir / POSITION_FILE, position.__dict__)


def write_rng(state_dir: Path, rank: int) -> None:
    write_json_atomic(state_dir / f"rng_rank{rank}.json", rng_state())


def write_reader(state_dir: Path, rank: int, state: dict[str, Any] | None) -> None:
    """A rank's reader position; none for a loader that reports none (resume replays)."""
    if state is not None:
        write_json_atomic(state_dir / f"reader_rank{rank}.json", state)


def read_reader(state_dir: Path, rank: int) -> dict[str, Any] | None:
    """A rank's reader position, or None where the checkpoint has none (older ones)."""
    path = state_dir / f"reader_rank{rank}.json"
    return read_state_json(path) if path.is_file() else None


def read_position(state_dir: Path) -> Position:
    path = state_dir / POSITION_FILE
    try:
        return Position(**read_state_json(path))
    except TypeError as exc:
        raise TrainError(f"{path}: unreadable train state ({exc}); {OLDER_CHECKPOINT}") from exc


def read_rng(state_dir: Path, rank: int) -> dict[str, Any]:
    path = state_dir / f"rng_rank{rank}.json"
    state = read_state_json(path)
    if not isinstance(state, dict):
        raise TrainError(f"{path}: unreadable train state (not a JSON object); {OLDER_CHECKPOINT}")
    return state


def read_state_json(path: Path) -> Any:
    """One train state JSON file, or a TrainError naming it (never a JSON traceback)."""
    try:
        return parse_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: unreadable train state ({exc}); {OLDER_CHECKPOINT}") from None


def latest_train_state(run_dir: Path) -> Path | None:
    """The train_state/ of the run dir's `latest` checkpoint, or None when there is none."""
    if not (run_dir / LATEST_FILE).is_file():
        return None
    refuse_linked_checkpoints(run_dir)
    try:
        ckpt = resolve_checkpoint(run_dir)
        read_metadata(ckpt)  # schema and configs: a checkpoint of another schema is refused
    except CheckpointError as exc:
        raise TrainError(str(exc)) from exc
    state = ckpt / TRAIN_STATE_DIR
    if not (state / POSITION_FILE).is_file():
        raise TrainError(f"checkpoint {ckpt} has no {TRAIN_STATE_DIR}/{POSITION_FILE} (weights "
                         "only) and cannot resume a run; start a new run with another --out")
    return state


def refuse_linked_checkpoints(run_dir: Path) -> None:
    """A resumed run deletes checkpoints in RUN/checkpoints/ (pruning, unfinished ones), so a
    symlink there would have it delete or fail on files outside the run dir: refuse it before
    anything is written rather than follow it."""
    checkpoints = run_dir / "checkpoints"
    inside = sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []
    link = next((path for path in (checkpoints, *inside) if path.is_symlink()), None)
    if link is not None:
        raise TrainError(f"{link} is a symlink (to {os.readlink(link)}); levl-train does not "
                         "follow links in a run dir it writes to: replace the link with a copy "
                         "of its target, or remove it")


def check_layout(position: Position, world_size: int, engine: str, zero_stage: int,
                 where: Path) -> None:
    saved = (position.world_size, position.engine, position.zero_stage)
    if saved != (world_size, engine, zero_stage):
        raise TrainError(
            f"{where} was saved with world size {saved[0]}, engine {saved[1]}, ZeRO {saved[2]}; "
            f"this launch has {world_size}, {engine}, ZeRO {zero_stage}: relaunch with the same")


def resume_mode(run_dir: Path, config: dict[str, Any]) -> str:
    """'new' for an empty/absent dir, 'resume' for a dir holding this config's checkpoint,
    'restart' for one holding this config stopped before its first checkpoint (a job preempted
    early and requeued must start over, not fail); another recipe or config is refused."""
    if not (run_dir / CONFIG_FILE).is_file():
        return "new"
    saved = read_config(run_dir)
    if not saved.get("recipe"):
        raise TrainError(f"run dir {run_dir} already holds a run whose config.json is not one "
                         "levl-train wrote; pass another --out or remove it")
    if saved["recipe"] != config["recipe"]:
        raise TrainError(f"run dir {run_dir} holds a run of recipe {saved['recipe']}, not "
                         f"{config['recipe']}; pass another --out")
    difference = first_difference(with_current_defaults(saved), config)
    if difference:
        raise TrainError(f"run dir {run_dir} holds this recipe with {difference}; resume it with "
                         f"`levl-train resume {run_dir}` or pass another --out")
    return "resume" if latest_train_state(run_dir) is not None else "restart"


def with_current_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A run dir's config with the keys added to TrainConfig since it was written (say, the `log`
    section) at their defaults, so an older run still matches the recipe that made it."""
    try:
        return config_from_dict(saved).to_dict()
    except (TrainError, TypeError, ValueError):
        return saved


def first_difference(saved: Any, wanted: Any, prefix: str = "") -> str | None:
    """The first key whose value differs, as `key=saved (asked: wanted)`."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(set(saved) | set(wanted)):
            found = first_difference(saved.get(key), wanted.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if saved != wanted and not _same_sequence(saved, wanted):
        return f"{prefix.rstrip('.')}={saved!r} (asked: {wanted!r})"
    return None


def _same_sequence(a: Any, b: Any) -> bool:
    return isinstance(a, list | tuple) and isinstance(b, list | tuple) and list(a) == list(b)


def discard_unfinished(checkpoints: Path, latest_step: int) -> None:
    """Remove what a killed run left past `latest`: checkpoints that never became latest and
    temp/staging dirs. The resumed run rewrites them, and checkpoints are never overwritten."""
    for path in checkpoints.iterdir():
        stale = path.name.startswith(".")
        if path.name.startswith("step_"):
            stale = int(path.name.removeprefix("step_")) > latest_step
        if stale and path.is_dir():
            shutil.rmtree(path)
