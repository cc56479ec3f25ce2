"""Read a tar shard once, hashing it and counting its samples in the same pass.

Verification of a large corpus is I/O bound, so the sha256, the byte count and the sample count
come from a single sequential read instead of one pass per check.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ShardScan:
    """What one read of a shard found; `error` is set when the tar could not be parsed."""

    bytes: int
    sha256: str
    num_samples: int
    error: str | None = None


class _HashingReader:
    """A read-only file wrapper that hashes every byte the tar parser pulls through it."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        """Hash whatever the tar parser did not need (end-of-archive padding, garbage)."""
        while chunk := self.read(_CHUNK):
            del chunk


def hash_file(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of any file, streamed (multi-GB metadata never sits in memory)."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return handle.tell(), digest.hexdigest()


def sha256_file(path: Path) -> str:
    return hash_file(path)[1]


def sample_key(member_name: str) -> str:
    """The webdataset sample key of a member: the name up to the first dot of its basename."""
    directory, _, base = member_name.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{directory}/{stem}" if directory else stem


def scan_shard(path: Path) -> ShardScan:
    """Hash `path` and count the distinct consecutive sample keys of its regular members."""
    with open(path, "rb") as raw:
        reader = _HashingReader(raw)
        num_samples, error = 0, None
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                previous = None
                for info in tar:
                    if not info.isreg():
                        continue
                    key = sample_key(info.name)
                    if key != previous:
                        num_samples += 1
                        previous = key
        except (tarfile.TarError, OSError, EOFError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        reader.drain()
    return ShardScan(reader.count, reader.digest.hexdigest(), num_samples, error)


def iter_members(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (sample key, member extension, content) for each regular member, in tar order."""
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            if not info.isreg():
                continue
            base = info.name.rpartition("/")[2]
            extension = base.split(".", 1)[1] if "." in base else ""
            handle = tar.extractfile(info)
            yield sample_key(info.name), extension.lower(), handle.read() if handle else b""
