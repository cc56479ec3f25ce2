"""scan_shard walks tar headers itself (fast); it must agree with Python's tarfile on every tar
a shard writer emits, fall back to tarfile on the rest, and name what breaks a broken one."""

from __future__ import annotations

import hashlib
import io
import signal
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from levl_data.shardscan import _count_samples_tarfile, scan_shard


def _tar(path: Path, members: list[tuple[str, bytes]], tar_format: int,
         pax_headers: dict | None = None) -> Path:
    with tarfile.open(path, "w", format=tar_format, pax_headers=pax_headers or {}) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def _samples(count: int, directory: str = "") -> list[tuple[str, bytes]]:
    return [
        (f"{directory}{index:06d}.{extension}", f"{index}-{extension}".encode() * (index + 1))
        for index in range(count)
        for extension in ("jpg", "txt", "json")
    ]


def _agrees_with_tarfile(path: Path, expected_samples: int) -> None:
    scan = scan_shard(path)
    content = path.read_bytes()
    assert scan.error is None
    assert scan.num_samples == expected_samples == _count_samples_tarfile(path)[0]
    assert (scan.bytes, scan.sha256) == (len(content), hashlib.sha256(content).hexdigest())


def test_webdataset_shard_with_pax_headers_is_counted(tmp_path):
    """webdataset writes a pax header before every member (float mtimes)."""
    path = tmp_path / "wds.tar"
    with wds.TarWriter(str(path)) as writer:
        for index in range(7):
            writer.write({"__key__": f"{index:09d}", "jpg": b"\xff" * 700, "txt": "a caption"})
    with tarfile.open(path) as tar:
        assert tar.getmembers()[0].pax_headers  # the walk does meet pax headers
    _agrees_with_tarfile(path, 7)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT,
                                        tarfile.PAX_FORMAT])
def test_long_names_in_every_format(tmp_path, tar_format):
    """ustar's prefix field, GNU long-name and pax path records all carry the full name."""
    directory = "d" * 60 + "/" + "e" * 60 + "/"  # > 100 characters in all
    path = _tar(tmp_path / "long.tar", _samples(5, directory), tar_format)
    _agrees_with_tarfile(path, 5)


def test_directories_and_links_are_not_samples(tmp_path):
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        directory = tarfile.TarInfo("shard")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, content in _samples(3, "shard/"):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("shard/zzz.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "shard/000000.jpg"
        tar.addfile(link)
    _agrees_with_tarfile(path, 3)


def test_global_pax_header_falls_back_to_tarfile(tmp_path):
    path = _tar(tmp_path / "global.tar", _samples(4), tarfile.PAX_FORMAT, {"comment": "levl"})
    _agrees_with_tarfile(path, 4)


def test_truncated_member_is_an_error_with_the_samples_before_it(tmp_path):
    path = _tar(tmp_path / "whole.tar", _samples(6), tarfile.USTAR_FORMAT)
    content = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(content[: len(content) // 2 + 100])  # inside a member, not at a boundary
    scan = scan_shard(cut)
    assert scan.error is not None and "truncated" in scan.error
    assert 0 < scan.num_samples < 6
    assert scan.bytes == len(content) // 2 + 100


def test_garbage_header_is_an_error(tmp_path):
    path = _tar(tmp_path / "whole.tar", _samples(2), tarfile.USTAR_FORMAT)
    content = bytearray(path.read_bytes())
    content[512 + 512 : 512 + 512 + 100] = b"x" * 100  # the second member's header
    path.write_bytes(bytes(content))
    scan = scan_shard(path)
    assert scan.error is not None and "checksum at byte 1024" in scan.error
    assert scan.num_samples == 1


def test_empty_and_non_tar_files_are_errors(tmp_path):
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    assert scan_shard(empty).error is not None
    text = tmp_path / "text.tar"
    text.write_bytes(b"not a tar at all\n" * 100)
    scan = scan_shard(text)
    assert scan.error is not None and scan.num_samples == 0


def test_tar_ending_without_end_of_archive_blocks_is_whole(tmp_path):
    """Some streaming writers stop at the last member; tarfile reads that as a whole archive."""
    path = _tar(tmp_path / "whole.tar", _samples(3), tarfile.USTAR_FORMAT)
    content = path.read_bytes()
    end = len(content.rstrip(b"\0"))
    end += -end % 512
    path.write_bytes(content[:end])
    _agrees_with_tarfile(path, 3)


def test_a_malformed_pax_record_length_ends_the_walk(tmp_path):
    """A pax record claiming length 0 must not loop forever: tarfile gets the file instead."""
    path = _tar(tmp_path / "pax.tar", [("p" * 120 + ".jpg", b"x" * 10)], tarfile.PAX_FORMAT)
    content = bytearray(path.read_bytes())
    length_text = bytes(content[512:520]).split(b" ", 1)[0]
    content[512 : 512 + len(length_text)] = b"0" * len(length_text)
    path.write_bytes(bytes(content))
    previous = signal.signal(signal.SIGALRM, _too_long)  # a regression hangs: fail instead
    signal.alarm(20)
    try:
        scan = scan_shard(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert scan.bytes == len(content)


def _too_long(signum, frame):
    raise AssertionError("scan_shard did not return within 20 s")
