"""Write samples into a rolling set of webdataset tar shards plus their manifest.

A shard is written under a `.tmp` name and renamed only when complete and fsynced, and the
manifest is written last, so a file named like a finished shard is always a finished shard and
a directory with a manifest is always a complete dataset version, whatever crashes in between.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import webdataset as wds

from levl_data import __version__
from levl_data.errors import DataError
from levl_data.manifest import MANIFEST_NAME, SCHEMA, fingerprint, fsync_dir, write_manifest

DEFAULT_MEMBERS = {"image": "jpg", "caption": "txt", "json": "json"}


class _HashingFile:
    """A write-only file wrapper that hashes and counts what the tar writer emits."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        if self._raw is None:  # aborted: the tar stream's final flush goes nowhere
            return len(data)
        self.digest.update(data)
        self.count += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        if self._raw is not None:
            self._raw.flush()

    def discard(self) -> None:
        self._raw = None


class _OpenShard:
    """The shard being written: its temp file, tar writer and sample count."""

    def __init__(self, final_path: Path, mtime: float):
        self.final_path = final_path
        self.tmp_path = final_path.with_name(final_path.name + ".tmp")
        self.raw = open(self.tmp_path, "wb")  # noqa: SIM115 — closed in complete()/abort()
        self.file = _HashingFile(self.raw)
        self.tar = wds.TarWriter(self.file, encoder=True, mtime=mtime, user="levl", group="levl")
        self.num_samples = 0

    def complete(self) -> dict:
        """Flush, fsync, rename into place; return the shard's manifest entry."""
        self.tar.close()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        self.tmp_path.replace(self.final_path)
        fsync_dir(self.final_path.parent)
        return {
            "path": self.final_path.name,
            "num_samples": self.num_samples,
            "bytes": self.file.count,
            "sha256": self.file.digest.hexdigest(),
        }

    def abort(self) -> None:
        """Drop the partial shard: nothing half-written may survive."""
        self.file.discard()
        try:
            self.tar.close()
        finally:
            self.raw.close()
            self.tmp_path.unlink(missing_ok=True)


class ShardSetWriter:
    """Context manager writing `<prefix>-000000.tar`, ... into `out_dir`, then a manifest.

    `write(sample)` takes a dict with `__key__` and members (bytes, str, or dict/list for JSON;
    other values go through webdataset's extension-based encoders, e.g. a PIL image for `jpg`).
    A new shard starts every `samples_per_shard` samples (or `max_shard_bytes`, if given).
    `mtime` is fixed by default so the same samples give byte-identical shards (and fingerprint).
    On an exception inside the `with` block the partial shard is deleted; completed shards stay
    (they are valid), but no manifest is written, so the directory is not a dataset version.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        samples_per_shard: int = 1000,
        prefix: str = "shard",
        max_shard_bytes: int | None = None,
        mtime: float = 0.0,
    ):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out_dir = Path(out_dir).absolute()
        self.samples_per_shard = samples_per_shard
        self.prefix = prefix
        self.max_shard_bytes = max_shard_bytes
        self.mtime = mtime
        self.shards: list[dict] = []
        self.written = 0
        self.failures: Counter[str] = Counter()
        self._members_seen: set[str] = set()
        self._current: _OpenShard | None = None
        self._previous_key: str | None = None
        self._finished = False
        self._prepare_dir()

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, sample: dict[str, Any]) -> None:
        """Append one sample to the current shard, rolling to a new shard when it is full."""
        if self._finished:
            raise DataError(f"shard set {self.out_dir}: write() after finish()")
        key = self._check_key(sample)
        encoded = {name: _encode_member(value) for name, value in sample.items()}
        if self._current is None:
            self._current = _OpenShard(self._shard_path(len(self.shards)), self.mtime)
        self._current.tar.write(encoded)
        self._current.num_samples += 1
        self.written += 1
        self._previous_key = key
        self._members_seen.update(name for name in sample if not name.startswith("_"))
        if self._shard_is_full(self._current):
            self._complete_current()

    def record_failure(self, reason: str) -> None:
        """Count a sample the producer could not write (it enters `stats.failures`)."""
        self.failures[reason] += 1

    def close(self) -> None:
        """Complete the open shard, if any (idempotent)."""
        if self._current is not None:
            self._complete_current()

    def abort(self) -> None:
        """Delete the partial shard, if any; keep completed shards; write no manifest."""
        if self._current is not None:
            current, self._current = self._current, None
            current.abort()
        self._finished = True

    def finish(
        self,
        *,
        name: str,
        split: str,
        source: dict,
        image: dict,
        stats: dict | None = None,
        labels: dict | None = None,
        members: dict | None = None,
        command: str | None = None,
        created_at: str | None = None,
    ) -> Path:
        """Complete the last shard and write the manifest; returns the manifest path.

        `stats` defaults to this writer's counts (written + record_failure calls); `members`
        defaults to jpg/txt/json plus every other member extension written as `extra`.
        """
        self.close()
        if not self.shards:
            raise DataError(f"shard set {self.out_dir}: no samples were written, so no manifest")
        self._finished = True
        data = manifest_data(
            name=name,
            split=split,
            source=source,
            members=members if members is not None else self._default_members(),
            shards=self.shards,
            image=image,
            stats=stats if stats is not None else self._default_stats(),
            command=command,
            created_at=created_at,
        )
        if labels is not None:
            data["labels"] = labels
        return write_manifest(self.out_dir, data)

    def _prepare_dir(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        existing = [self.out_dir / MANIFEST_NAME, *self.out_dir.glob(f"{self.prefix}-*.tar")]
        clashes = [path.name for path in existing if path.exists()]
        if clashes:
            raise DataError(
                f"shard set {self.out_dir}: already holds {clashes[0]} (a dataset version is "
                "immutable; write into an empty directory or delete the old one)"
            )

    def _check_key(self, sample: dict[str, Any]) -> str:
        key = sample.get("__key__")
        if not isinstance(key, str) or not key or "." in key:
            raise ValueError(f"sample __key__ must be a non-empty string without '.', got {key!r}")
        if key == self._previous_key:
            raise ValueError(f"sample __key__ {key!r} repeats the previous sample's key")
        return key

    def _shard_path(self, index: int) -> Path:
        return self.out_dir / f"{self.prefix}-{index:06d}.tar"

    def _shard_is_full(self, shard: _OpenShard) -> bool:
        if shard.num_samples >= self.samples_per_shard:
            return True
        return self.max_shard_bytes is not None and shard.file.count >= self.max_shard_bytes

    def _complete_current(self) -> None:
        current, self._current = self._current, None
        try:
            self.shards.append(current.complete())
        except BaseException:
            current.abort()
            raise

    def _default_members(self) -> dict:
        members: dict[str, Any] = dict(DEFAULT_MEMBERS)
        if "json" not in self._members_seen:
            members["json"] = None
        extra = sorted(self._members_seen - {"jpg", "txt", "json"})
        if extra:
            members["extra"] = extra
        return members

    def _default_stats(self) -> dict:
        failed = sum(self.failures.values())
        return {
            "attempted": self.written + failed,
            "written": self.written,
            "failures": dict(sorted(self.failures.items())),
        }


def manifest_data(
    *,
    name: str,
    split: str,
    source: dict,
    members: dict,
    shards: list[dict],
    image: dict,
    stats: dict,
    command: str | None = None,
    created_at: str | None = None,
    format: str = "webdataset",
) -> dict:
    """The manifest dict of a finished shard set (webdataset tars or an ffcv file).

    Shared by ShardSetWriter and producers that write tars themselves (img2dataset), so every
    manifest gets the same producer block, sample total and fingerprint.
    """
    return {
        "schema": SCHEMA,
        "name": name,
        "split": split,
        "created_at": created_at or _utc_now(),
        "producer": {
            "package": "levl-data",
            "version": __version__,
            "command": command if command is not None else shlex.join(sys.argv),
        },
        "source": source,
        "format": format,
        "members": members,
        "shards": shards,
        "num_samples": sum(shard["num_samples"] for shard in shards),
        "image": image,
        "stats": stats,
        "fingerprint": fingerprint(shards),
    }


def _encode_member(value: Any) -> Any:
    """dict/list -> JSON bytes; everything else is left to webdataset's encoders."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
