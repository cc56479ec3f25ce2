"""ShardSetWriter: rolling shards, counts and hashes, byte-identical output, nothing half written."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from levl_data.errors import DataError
from levl_data.manifest import read_manifest, verify_manifest
from levl_data.writer import ShardSetWriter

SOURCE = {"kind": "custom", "metadata": [], "subset": {"rule": "all", "sha256": None}}
IMAGE = {"policy": "original", "size": None, "encoding": "jpeg"}


def _sample(index: int) -> dict:
    return {
        "__key__": f"k{index:04d}",
        "jpg": bytes([index % 256]) * 50,
        "txt": f"caption {index}",
        "json": {"label": index},
    }


def _write(out_dir: Path, n: int, per_shard: int, **finish) -> Path:
    with ShardSetWriter(out_dir, samples_per_shard=per_shard) as writer:
        for index in range(n):
            writer.write(_sample(index))
        return writer.finish(name="w", split="train", source=SOURCE, image=IMAGE, **finish)


def _finished_looking(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tar"))


def test_rolls_shards_and_records_counts_and_hashes(tmp_path: Path):
    path = _write(tmp_path, n=20, per_shard=8, command="levl-data test")
    manifest = read_manifest(path)
    assert _finished_looking(tmp_path) == [f"shard-00000{i}.tar" for i in range(3)]
    assert [shard.num_samples for shard in manifest.shards] == [8, 8, 4]
    assert manifest.num_samples == 20
    for shard, shard_path in zip(manifest.shards, manifest.shard_paths(), strict=True):
        content = shard_path.read_bytes()
        assert shard.bytes == len(content)
        assert shard.sha256 == hashlib.sha256(content).hexdigest()
    assert verify_manifest(manifest) == []
    assert manifest.data["stats"] == {"attempted": 20, "written": 20, "failures": {}}
    assert manifest.data["producer"]["command"] == "levl-data test"
    assert manifest.members == {"image": "jpg", "caption": "txt", "json": "json"}


def test_members_are_encoded_and_extras_listed(tmp_path: Path):
    with ShardSetWriter(tmp_path, samples_per_shard=4) as writer:
        writer.write({**_sample(0), "mask.png": b"\x89PNG fake"})
        path = writer.finish(name="w", split="eval", source=SOURCE, image=IMAGE)
    manifest = read_manifest(path)
    assert manifest.members["extra"] == ["mask.png"]
    with tarfile.open(manifest.shard_paths()[0]) as tar:
        names = tar.getnames()
        assert names == ["k0000.jpg", "k0000.json", "k0000.mask.png", "k0000.txt"]
        assert json.loads(tar.extractfile("k0000.json").read()) == {"label": 0}
        assert tar.extractfile("k0000.txt").read() == b"caption 0"


def test_same_samples_give_identical_bytes_and_fingerprint(tmp_path: Path):
    first = read_manifest(_write(tmp_path / "a", n=10, per_shard=4))
    second = read_manifest(_write(tmp_path / "b", n=10, per_shard=4))
    assert first.fingerprint == second.fingerprint


def test_failures_are_counted_in_stats(tmp_path: Path):
    with ShardSetWriter(tmp_path, samples_per_shard=4) as writer:
        writer.write(_sample(0))
        writer.record_failure("download_error")
        writer.record_failure("download_error")
        path = writer.finish(name="w", split="train", source=SOURCE, image=IMAGE)
    stats = read_manifest(path).data["stats"]
    assert stats == {"attempted": 3, "written": 1, "failures": {"download_error": 2}}


def test_exception_mid_shard_leaves_no_partial_shard_and_no_manifest(tmp_path: Path):
    with (
        pytest.raises(RuntimeError, match="boom"),
        ShardSetWriter(tmp_path, samples_per_shard=8) as w,
    ):
        for index in range(11):  # shard 0 completes, shard 1 is half written
            w.write(_sample(index))
        raise RuntimeError("boom")
    assert _finished_looking(tmp_path) == ["shard-000000.tar"]  # complete, hence valid
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shard-000000.tar"]
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        assert len(tar.getnames()) == 8 * 3


def test_exception_in_first_shard_leaves_nothing(tmp_path: Path):
    with pytest.raises(KeyError), ShardSetWriter(tmp_path, samples_per_shard=8) as writer:
        writer.write(_sample(0))
        raise KeyError("crash")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_directory_holding_a_dataset(tmp_path: Path):
    _write(tmp_path, n=2, per_shard=8)
    with pytest.raises(DataError, match="already holds"):
        ShardSetWriter(tmp_path)


def test_rejects_bad_keys_and_empty_sets(tmp_path: Path):
    with ShardSetWriter(tmp_path / "a") as writer:
        with pytest.raises(ValueError, match="__key__"):
            writer.write({"__key__": "has.dot", "txt": "x"})
        with pytest.raises(ValueError, match="__key__"):
            writer.write({"txt": "no key"})
        with pytest.raises(DataError, match="no samples"):
            writer.finish(name="w", split="train", source=SOURCE, image=IMAGE)
