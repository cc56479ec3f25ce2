"""The shard manifest contract (`levl.shards/v1`): read, validate, write, fingerprint, verify.

A manifest identifies one immutable dataset version. Readers refuse anything they cannot trust
(unknown schema, hand-edited shard list, missing shard) with a one-line ManifestError naming
the file, so a training run never starts on data other than the data it claims to use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from levl_data.errors import ManifestError
from levl_data.jsontext import TOO_DEEP, parse_json
from levl_data.shardscan import scan_shard

SCHEMA = "levl.shards/v1"
MANIFEST_NAME = "manifest.json"
SCHEMA_FILE = "shards-v1.schema.json"


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the manifest records it; `path` is relative to the manifest's directory."""

    path: str
    num_samples: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: `path` is the absolute path of the manifest file, `data` its JSON."""

    path: Path
    data: dict

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def split(self) -> str:
        return self.data["split"]

    @property
    def num_samples(self) -> int:
        return self.data["num_samples"]

    @property
    def fingerprint(self) -> str:
        return self.data["fingerprint"]

    @property
    def shards(self) -> list[ShardInfo]:
        return [ShardInfo(**shard) for shard in self.data["shards"]]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def labels(self) -> dict | None:
        return self.data.get("labels")

    @property
    def members(self) -> dict:
        return self.data["members"]

    def shard_paths(self) -> list[Path]:
        return [self.root / shard.path for shard in self.shards]


@cache
def load_schema() -> dict:
    """The JSON Schema shipped in the package (cached: it is immutable package data)."""
    text = resources.files("levl_data").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def fingerprint(shards: list[dict]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of the shard list.

    It covers paths, counts, sizes and content hashes, so two manifests with the same
    fingerprint describe byte-identical data regardless of when or by whom they were written.
    """
    canonical = json.dumps(shards, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def resolve_manifest_path(path: str | Path) -> Path:
    """A manifest file path, or a directory holding `manifest.json`, as an absolute file path."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MANIFEST_NAME
    return path.absolute()


def read_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Load and validate a manifest; every failure is a ManifestError naming the file."""
    file = resolve_manifest_path(path)
    data = _load_json(file)
    validate_manifest(data, file)
    manifest = Manifest(path=file, data=data)
    if check_files:
        _check_shards_exist(manifest)
    return manifest


def validate_manifest(data: Any, file: Path | str) -> None:
    """Schema, then the invariants a schema cannot express (fingerprint, sample count)."""
    if not isinstance(data, dict):
        raise ManifestError(
            f"manifest {file}: not a JSON object (expected a levl.shards/v1 manifest)"
        )
    if "schema" not in data:
        raise ManifestError(f'manifest {file}: missing required key $.schema (expected "{SCHEMA}")')
    if data["schema"] != SCHEMA:
        raise ManifestError(
            f"manifest {file}: unknown schema {json.dumps(data['schema'])} "
            f"(this levl-data reads {SCHEMA})"
        )
    _check_schema(data, file)
    expected = fingerprint(data["shards"])
    if data["fingerprint"] != expected:
        raise ManifestError(
            f"manifest {file}: fingerprint {data['fingerprint']} does not match its shard list "
            f"({expected}); the shard list was edited — restore the manifest or rewrite it "
            "with write_manifest"
        )
    total = sum(shard["num_samples"] for shard in data["shards"])
    if data["num_samples"] != total:
        raise ManifestError(
            f"manifest {file}: num_samples is {data['num_samples']} but the shards hold {total} "
            "(restore the manifest or rewrite it with write_manifest)"
        )


def write_manifest(out_dir: str | Path, data: dict) -> Path:
    """Validate `data` and write `out_dir/manifest.json` atomically (temp file, fsync, rename).

    Shard files must already be in place: a manifest is written last, so its existence means
    the shard set is complete.
    """
    out_dir = Path(out_dir).absolute()
    file = out_dir / MANIFEST_NAME
    validate_manifest(data, file)
    _check_shards_exist(Manifest(path=file, data=data))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(file, text.encode("utf-8"))
    return file


def verify_manifest(manifest: Manifest | str | Path) -> list[str]:
    """Re-hash every shard; one problem line per shard that is missing or differs.

    Reads each shard once (sha256, bytes and sample count in one pass). An empty list means
    the files on disk are exactly the dataset version the fingerprint names.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, check_files=False)
    problems: list[str] = []
    for shard, shard_path in zip(manifest.shards, manifest.shard_paths(), strict=True):
        problems.extend(_shard_problems(shard, shard_path, manifest))
    return problems


def atomic_write_bytes(file: Path, payload: bytes) -> None:
    """Write `payload` to a temp file beside `file`, fsync it, then rename over `file`."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; a shared dataset must be readable
        os.replace(tmp_name, file)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(file.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _load_json(file: Path) -> Any:
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"manifest {file}: no such file (pass a manifest.json or a directory holding one)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {file}: cannot read it ({exc})") from None
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        where = "" if exc.msg == TOO_DEEP else f" at line {exc.lineno} column {exc.colno}"
        raise ManifestError(
            f"manifest {file}: not JSON ({exc.msg}{where}); "
            "restore the file or regenerate the shard set"
        ) from None


def _check_schema(data: dict, file: Path | str) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        where = f"{error.json_path}.{missing[0]}" if missing else error.json_path
        raise ManifestError(
            f"manifest {file}: missing required key {where} (add it; see the {SCHEMA} schema "
            f"levl_data/schemas/{SCHEMA_FILE})"
        )
    raise ManifestError(
        f"manifest {file}: invalid value at {error.json_path}: {_short(error.message)} "
        f"(fix it to match levl_data/schemas/{SCHEMA_FILE})"
    )


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _check_shards_exist(manifest: Manifest) -> None:
    for shard_path in manifest.shard_paths():
        if not shard_path.is_file():
            raise ManifestError(
                f"manifest {manifest.path}: shard {shard_path} is missing (restore it, or "
                "regenerate the shard set)"
            )


def _shard_problems(shard: ShardInfo, shard_path: Path, manifest: Manifest) -> list[str]:
    if not shard_path.is_file():
        return [f"{shard_path}: missing (listed in {manifest.path}; restore it)"]
    if manifest.data["format"] == "ffcv":
        from levl_data.ffcv_format import scan_beton  # ffcv is an optional extra

        scan = scan_beton(shard_path)
    else:
        scan = scan_shard(shard_path)
    problems = []
    if scan.bytes != shard.bytes:
        problems.append(
            f"{shard_path}: {scan.bytes} bytes, manifest says {shard.bytes} (truncated or "
            "replaced; restore it or regenerate the shard set)"
        )
    if scan.sha256 != shard.sha256:
        problems.append(
            f"{shard_path}: sha256 {scan.sha256} != manifest {shard.sha256} (corrupted or "
            "replaced; restore it or regenerate the shard set)"
        )
    if scan.error is not None:
        kind = manifest.data["format"]
        problems.append(f"{shard_path}: not a readable {kind} shard ({scan.error})")
    elif scan.num_samples != shard.num_samples:
        problems.append(
            f"{shard_path}: {scan.num_samples} samples, manifest says {shard.num_samples}"
        )
    return problems
