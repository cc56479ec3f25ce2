"""Read a tar shard once, hashing it and counting its samples in the same pass.

Verification of a large corpus is I/O bound, so the sha256, the byte count and the sample count
come from a single sequential read (the file is mapped, hashed, then its headers are walked in
the page cache) instead of one pass per check.

The sample count walks the 512-byte ustar headers directly: Python's tarfile builds a TarInfo per
member at ~70 µs each, which made checking a fetch's shards cost as much as a tenth of
img2dataset's own time on loopback (bench/fetch.py). The walk covers what shard writers emit
(webdataset, img2dataset, GNU tar: plain ustar members); anything else (pax or GNU long-name
headers, sparse files, base-256 sizes) goes to tarfile, which reads every tar variant.
"""

from __future__ import annotations

import hashlib
import mmap
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")  # tarfile's REGULAR_TYPES less GNU sparse (left to tarfile)
_PLAIN = (*_REGULAR, b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, dirs, fifos
# pax ("x") and GNU long-name ("L", "K") headers are read too: webdataset writes a pax header
# before every member (its mtimes are floats); global pax headers ("g") go to tarfile.


@dataclass(frozen=True)
class ShardScan:
    """What one read of a shard found; `error` is set when the tar could not be parsed."""

    bytes: int
    sha256: str
    num_samples: int
    error: str | None = None


class _NotPlainUstar(Exception):
    """A header the direct walk does not read; tarfile takes over."""


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
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            return ShardScan(0, hashlib.sha256().hexdigest(), 0, "ReadError: empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            digest = hashlib.sha256(data).hexdigest()
            try:
                num_samples, error = _count_samples(data)
            except _NotPlainUstar:
                num_samples, error = _count_samples_tarfile(path)
    return ShardScan(size, digest, num_samples, error)


def _count_samples(data: mmap.mmap) -> tuple[int, str | None]:
    """(samples, error) from walking the headers; the count so far when the tar is broken."""
    num_samples, previous, offset, end = 0, None, 0, len(data)
    pending: dict[bytes, bytes] = {}  # what a pax or GNU long-name header says of the next one
    while offset < end:
        header = data[offset : offset + _BLOCK]
        if header == _ZERO_BLOCK:
            return num_samples, None
        if len(header) < _BLOCK:
            return num_samples, f"ReadError: truncated header at byte {offset}"
        if not _checksum_ok(header):
            return num_samples, f"ReadError: bad header checksum at byte {offset}"
        kind, name, size = _parse_header(header, pending)
        if offset + _BLOCK + size > end:
            return num_samples, f"ReadError: member {name!r} is truncated (file ends first)"
        payload_at, offset = offset + _BLOCK, offset + _BLOCK + -(-size // _BLOCK) * _BLOCK
        if kind in _EXTENSIONS:
            pending.update(_EXTENSIONS[kind](data[payload_at : payload_at + size]))
            continue
        pending = {}
        if kind in _REGULAR and (key := sample_key(name)) != previous:
            num_samples, previous = num_samples + 1, key
    return num_samples, None


def _checksum_ok(header: bytes) -> bool:
    """ustar's checksum: the byte sum with the checksum field read as spaces (either sign)."""
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip(), 8)
    except ValueError:
        return False
    rest = header[:148] + header[156:]
    unsigned = sum(rest) + 8 * 32
    return stored == unsigned or stored == unsigned - 256 * sum(1 for b in rest if b > 127)


def _parse_header(header: bytes, pending: dict[bytes, bytes]) -> tuple[bytes, str, int]:
    """(type flag, member name, data size), with a preceding pax/long-name header applied."""
    kind = header[156:157]
    if kind not in _PLAIN and kind not in _EXTENSIONS or header[124] & 0x80:
        raise _NotPlainUstar
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar" and (prefix := header[345:500].split(b"\0", 1)[0]):
        name = prefix + b"/" + name
    try:
        size = int(pending[b"size"]) if b"size" in pending else _octal(header[124:136])
    except ValueError:
        raise _NotPlainUstar from None
    return kind, pending.get(b"path", name).decode("utf-8", "surrogateescape"), size


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _pax_records(payload: bytes) -> dict[bytes, bytes]:
    """A pax extended header's `LENGTH key=value\\n` records (path and size are what matter)."""
    records, at = {}, 0
    while at < len(payload) and payload[at] != 0:
        length_text = payload[at : at + 20].split(b" ", 1)[0]
        try:
            length = int(length_text)
        except ValueError:
            raise _NotPlainUstar from None
        if length <= len(length_text) + 1:  # a record cannot be this short; 0 would loop forever
            raise _NotPlainUstar
        key, _, value = payload[at + len(length_text) + 1 : at + length - 1].partition(b"=")
        records[key] = value
        at += length
    return records


_EXTENSIONS = {
    b"x": _pax_records,
    b"L": lambda payload: {b"path": payload.split(b"\0", 1)[0]},
    b"K": lambda payload: {},  # GNU long link name: links are not samples
}


def _count_samples_tarfile(path: Path) -> tuple[int, str | None]:
    num_samples, previous = 0, None
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                if info.isreg() and (key := sample_key(info.name)) != previous:
                    num_samples, previous = num_samples + 1, key
    except (tarfile.TarError, OSError, EOFError) as exc:
        return num_samples, f"{type(exc).__name__}: {exc}"
    return num_samples, None


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
