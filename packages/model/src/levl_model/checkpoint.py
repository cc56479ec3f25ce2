"""The checkpoint contract `levl.checkpoint/v1`: a directory with `model.safetensors` (tensors
only, never pickle) and `metadata.json` (validated against the shipped JSON Schema).

Writes are atomic (temp dir beside the target, fsync, rename) so a crash never leaves a
half-written checkpoint that `latest` could point at; loads rebuild the model from the metadata
alone and refuse tensors that do not match it, naming the file and the first offending keys.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from levl_model.config import ModelConfig, ObjectiveConfig
from levl_model.errors import CheckpointError, ConfigError
from levl_model.jsontext import parse_json
from levl_model.model import LevlModel, build_model
from levl_model.objectives import Objective, build_objective
from levl_model.preprocess import Preprocess

CHECKPOINT_SCHEMA = "levl.checkpoint/v1"
METADATA_FILE = "metadata.json"
TENSORS_FILE = "model.safetensors"
TRAIN_STATE_DIR = "train_state"
LATEST_FILE = "latest"
OBJECTIVE_PREFIX = "objective."


@dataclass(frozen=True)
class LoadedCheckpoint:
    """Modules come back in train mode (as torch builds them): call `.eval()` for inference."""

    model: LevlModel
    objective: Objective
    metadata: dict[str, Any]
    model_config: ModelConfig
    objective_config: ObjectiveConfig
    preprocess: Preprocess
    tokenizer_spec: dict[str, Any]
    path: Path


def metadata_schema() -> dict[str, Any]:
    text = (files("levl_model") / "schemas" / "checkpoint-v1.schema.json").read_text()
    return json.loads(text)


def _as_dict(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value


def validate_metadata(metadata: Any, where: str) -> None:
    """Schema string first (the most common mistake deserves the clearest message), then the
    JSON Schema, then the strict config parsers for value ranges the schema cannot express."""
    if not isinstance(metadata, Mapping):
        raise CheckpointError(f"{where}: metadata is not a JSON object")
    schema = metadata.get("schema")
    if schema != CHECKPOINT_SCHEMA:
        raise CheckpointError(
            f"{where}: unknown schema {schema!r} (this levl-model reads {CHECKPOINT_SCHEMA})"
        )
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(metadata_schema()).iter_errors(metadata)
    )
    if error is not None:
        location = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise CheckpointError(f"{where}: invalid metadata at {location}: {error.message}")
    try:
        ModelConfig.from_dict(metadata["model_config"])
        ObjectiveConfig.from_dict(metadata["objective_config"])
        Preprocess.from_dict(metadata["preprocess"])
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc


def build_metadata(
    *,
    model_config: ModelConfig | Mapping[str, Any],
    objective_config: ObjectiveConfig | Mapping[str, Any],
    tokenizer_spec: Mapping[str, Any],
    preprocess: Preprocess | Mapping[str, Any],
    step: int,
    samples_seen: int,
    manifest_fingerprint: str | None,
    recipe: Mapping[str, Any],
    code_version: str,
) -> dict[str, Any]:
    """Validated metadata, passed through JSON once so what is saved equals what loads back."""
    metadata = {
        "schema": CHECKPOINT_SCHEMA,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_config": _as_dict(model_config),
        "objective_config": _as_dict(objective_config),
        "tokenizer_spec": dict(tokenizer_spec),
        "preprocess": _as_dict(preprocess),
        "step": step,
        "samples_seen": samples_seen,
        "manifest_fingerprint": manifest_fingerprint,
        "recipe": recipe,
        "code_version": code_version,
    }
    try:
        metadata = json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint metadata is not JSON-serialisable ({exc}); pass plain dicts/lists/numbers"
        ) from exc
    validate_metadata(metadata, "checkpoint metadata")
    return metadata


def checkpoint_tensors(model: nn.Module, objective: nn.Module) -> dict[str, torch.Tensor]:
    """One flat dict: the model's own keys plus the objective's under `objective.`."""
    tensors = {key: value for key, value in model.state_dict().items()}
    tensors.update({OBJECTIVE_PREFIX + key: value for key, value in objective.state_dict().items()})
    return {key: value.detach().cpu().contiguous() for key, value in tensors.items()}


def _check_matches_metadata(
    model: nn.Module, objective: nn.Module, metadata: Mapping[str, Any], where: str
) -> None:
    """Refuse to write a checkpoint whose metadata could not rebuild the saved modules."""
    pairs = ((model, "model_config", ModelConfig), (objective, "objective_config", ObjectiveConfig))
    for module, key, cls in pairs:
        own = getattr(module, "config", None)
        if own is not None and own != cls.from_dict(metadata[key]):
            raise CheckpointError(
                f"{where}: metadata {key} differs from the config of the {key.split('_')[0]} being saved"
            )


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(tmp: Path, tensors: dict[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
    save_file(tensors, str(tmp / TENSORS_FILE), metadata={"schema": CHECKPOINT_SCHEMA})
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    for path in (tmp / TENSORS_FILE, tmp / METADATA_FILE, tmp):
        _fsync_path(path)


def _adopt_train_state(tmp: Path, train_state: Path) -> None:
    """Move a trainer's finished state dir in as `train_state/`, fsynced, before the rename:
    the checkpoint then appears with its resume state or not at all."""
    target = tmp / TRAIN_STATE_DIR
    os.rename(train_state, target)
    for path in sorted(target.rglob("*"), reverse=True):
        _fsync_path(path)
    _fsync_path(target)
    _fsync_path(tmp)


def save_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    *,
    model: nn.Module,
    objective: nn.Module,
    metadata: Mapping[str, Any],
    train_state: str | os.PathLike[str] | None = None,
) -> Path:
    """Write into a temp dir beside `ckpt_dir`, fsync, rename into place; never overwrite.

    `train_state`, a directory on the same filesystem written by the trainer (optimizer,
    engine, data position), is moved in as `train_state/` before the rename.
    """
    target = Path(ckpt_dir)
    if target.exists():
        raise CheckpointError(
            f"checkpoint {target}: already exists (checkpoints are immutable; choose a new dir)"
        )
    validate_metadata(metadata, f"checkpoint {target}")
    _check_matches_metadata(model, objective, metadata, f"checkpoint {target}")
    tensors = checkpoint_tensors(model, objective)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a checkpoint is meant to be shared
        _write_files(tmp, tensors, metadata)
        if train_state is not None:
            _adopt_train_state(tmp, Path(train_state))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(target.parent)
    return target


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint dir as is; a run dir through its `latest` file (a relative path)."""
    root = Path(path)
    if (root / METADATA_FILE).is_file():
        return root
    latest = root / LATEST_FILE
    if not latest.is_file():
        reason = (
            "does not exist"
            if not root.exists()
            else f"has neither {METADATA_FILE} nor a {LATEST_FILE} file"
        )
        raise CheckpointError(f"checkpoint {root}: {reason} (pass a checkpoint dir or a run dir)")
    relative = latest.read_text().strip()
    target = root / relative
    if not relative or not (target / METADATA_FILE).is_file():
        raise CheckpointError(
            f"run dir {root}: {LATEST_FILE} points to {relative!r}, which is not a checkpoint dir (fix or delete {latest})"
        )
    return target


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validated metadata of a checkpoint dir (or of a run dir's latest checkpoint)."""
    meta_path = resolve_checkpoint(path) / METADATA_FILE
    try:
        metadata = parse_json(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {meta_path}: unreadable JSON ({exc})") from exc
    validate_metadata(metadata, f"checkpoint {meta_path}")
    return metadata


def existing_tensors_file(ckpt_dir: Path) -> Path:
    """ckpt_dir's model.safetensors, or the one-line error naming it."""
    tensors_path = ckpt_dir / TENSORS_FILE
    if not tensors_path.is_file():
        raise CheckpointError(
            f"checkpoint {tensors_path}: missing (a checkpoint needs {TENSORS_FILE} beside {METADATA_FILE})"
        )
    return tensors_path


def read_tensors(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    tensors_path = existing_tensors_file(ckpt_dir)
    try:
        return scalars_as_vectors(load_file(str(tensors_path), device="cpu"))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {tensors_path}: unreadable safetensors ({exc})") from exc


def scalars_as_vectors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Objective scalars (logit scale, SigLIP's t' and b) are one-element vectors since
    DeepSpeed refused 0-d parameters; checkpoints written before that hold them 0-d."""
    return {key: value.reshape(1) if key.startswith(OBJECTIVE_PREFIX) and value.ndim == 0
            else value for key, value in tensors.items()}


def _first(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def tensor_mismatches(
    expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]
) -> list[str]:
    """load_state_dict(strict=True) problems, phrased before torch raises its multi-line error."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(saved))
        if saved[k].shape != expected[k].shape
    ]
    problems = [f"missing keys {_first(missing)}"] if missing else []
    problems += [f"unexpected keys {_first(unexpected)}"] if unexpected else []
    problems += [f"shape mismatch (saved vs config) {_first(shapes)}"] if shapes else []
    return problems


def load_tensors_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], where: str) -> None:
    problems = tensor_mismatches(module.state_dict(), tensors)
    if problems:
        raise CheckpointError(
            f"{where}: tensors do not match the metadata config: {'; '.join(problems)}"
        )
    module.load_state_dict(tensors, strict=True)


def split_tensors(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model_part = {k: v for k, v in tensors.items() if not k.startswith(OBJECTIVE_PREFIX)}
    objective_part = {
        k[len(OBJECTIVE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OBJECTIVE_PREFIX)
    }
    return model_part, objective_part


def header_shapes(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor's name and shape from the safetensors header, as meta tensors: no data read."""
    tensors_path = existing_tensors_file(ckpt_dir)
    try:
        with safe_open(str(tensors_path), framework="pt") as handle:
            return {key: torch.empty(handle.get_slice(key).get_shape(), device="meta")
                    for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {tensors_path}: unreadable safetensors ({exc})") from exc


def check_header(ckpt_dir: Path, model_config: ModelConfig, objective_config: ObjectiveConfig,
                 where: str) -> None:
    """Compare the metadata's model with the file's tensors on the meta device first: metadata
    claiming a model far larger than its tensors must not allocate that model."""
    with torch.device("meta"):
        expected = dict(build_model(model_config).state_dict())
        expected |= {OBJECTIVE_PREFIX + key: value
                     for key, value in build_objective(objective_config).state_dict().items()}
    problems = tensor_mismatches(expected, scalars_as_vectors(header_shapes(ckpt_dir)))
    if problems:
        raise CheckpointError(
            f"{where}: tensors do not match the metadata config: {'; '.join(problems)}")


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> LoadedCheckpoint:
    """Rebuild model and objective from metadata and load their tensors strictly."""
    ckpt_dir = resolve_checkpoint(path)
    metadata = read_metadata(ckpt_dir)
    model_config = ModelConfig.from_dict(metadata["model_config"])
    objective_config = ObjectiveConfig.from_dict(metadata["objective_config"])
    where = f"checkpoint {ckpt_dir / TENSORS_FILE}"
    check_header(ckpt_dir, model_config, objective_config, where)
    model_tensors, objective_tensors = split_tensors(read_tensors(ckpt_dir))
    model = build_model(model_config)
    load_tensors_into(model, model_tensors, where)
    objective = build_objective(objective_config)
    load_tensors_into(objective, objective_tensors, f"{where} (objective.*)")
    return LoadedCheckpoint(
        model=model.to(device),
        objective=objective.to(device),
        metadata=metadata,
        model_config=model_config,
        objective_config=objective_config,
        preprocess=Preprocess.from_dict(metadata["preprocess"]),
        tokenizer_spec=metadata["tokenizer_spec"],
        path=ckpt_dir,
    )
