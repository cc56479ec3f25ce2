"""The levl.shards/v1 contract: what read/write/verify accept and the one-line errors they give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from levl_data.errors import DataError, ManifestError
from levl_data.manifest import (
    SCHEMA,
    Manifest,
    ShardInfo,
    fingerprint,
    load_schema,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from levl_data.testing import make_tiny_shards


def _copy_set(manifest: Path, tmp_path: Path) -> Path:
    target = tmp_path / "set"
    shutil.copytree(manifest.parent, target)
    return target / "manifest.json"


def _edit(manifest: Path, change) -> None:
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(ManifestError) as caught:
        read_manifest(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_shipped_schema_is_valid_draft_2020_12():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA


def test_round_trip_reads_what_the_writer_wrote(tiny_manifest: Path):
    manifest = read_manifest(tiny_manifest)
    assert isinstance(manifest, Manifest)
    assert manifest.path == tiny_manifest
    assert (manifest.name, manifest.split, manifest.num_samples) == (
        "levl-testing-tiny",
        "train",
        16,
    )
    assert manifest.shards == [
        ShardInfo(**shard) for shard in json.loads(tiny_manifest.read_text())["shards"]
    ]
    assert [shard.num_samples for shard in manifest.shards] == [8, 8]
    assert manifest.fingerprint == fingerprint(manifest.data["shards"])
    assert manifest.root == tiny_manifest.parent
    assert manifest.members == {"image": "jpg", "caption": "txt", "json": "json"}
    assert manifest.labels["classes"][0] == "red"
    assert all(path.is_absolute() and path.is_file() for path in manifest.shard_paths())
    assert read_manifest(tiny_manifest.parent).data == manifest.data  # a directory works too
    assert verify_manifest(manifest) == []


def test_write_manifest_rewrites_atomically_and_reads_back(tiny_manifest: Path, tmp_path: Path):
    path = _copy_set(tiny_manifest, tmp_path)
    data = read_manifest(path).data
    data["name"] = "renamed"
    assert write_manifest(path.parent, data) == path
    assert read_manifest(path).name == "renamed"
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".tar")) == [
        "manifest.json"
    ]


def test_write_manifest_refuses_invalid_data_and_leaves_the_old_file(
    tiny_manifest: Path, tmp_path: Path
):
    path = _copy_set(tiny_manifest, tmp_path)
    before = path.read_bytes()
    data = json.loads(before)
    data["format"] = "parquet"
    with pytest.raises(ManifestError, match=r"\$\.format"):
        write_manifest(path.parent, data)
    assert path.read_bytes() == before


def test_fingerprint_ignores_key_order_but_not_content():
    shard = {"path": "a.tar", "num_samples": 2, "bytes": 10, "sha256": "0" * 64}
    reordered = dict(reversed(list(shard.items())))
    assert fingerprint([shard]) == fingerprint([reordered])
    assert fingerprint([shard]) != fingerprint([{**shard, "num_samples": 3}])


def test_unknown_schema_names_file_and_known_version(tiny_manifest: Path, tmp_path: Path):
    path = _copy_set(tiny_manifest, tmp_path)
    _edit(path, lambda data: data.update(schema="levl.shards/v9"))
    message = _error(path)
    assert '"levl.shards/v9"' in message and SCHEMA in message


@pytest.mark.parametrize(
    ("remove", "json_path"),
    [
        (lambda data: data.pop("fingerprint"), "$.fingerprint"),
        (lambda data: data["source"].pop("kind"), "$.source.kind"),
        (lambda data: data["shards"][1].pop("sha256"), "$.shards[1].sha256"),
        (lambda data: data.pop("schema"), "$.schema"),
    ],
)
def test_missing_required_key_names_its_json_path(tiny_manifest, tmp_path, remove, json_path):
    path = _copy_set(tiny_manifest, tmp_path)
    _edit(path, remove)
    message = _error(path)
    assert f"missing required key {json_path}" in message


@pytest.mark.parametrize(
    ("change", "json_path"),
    [
        (lambda data: data["source"].update(kind="laion"), "$.source.kind"),
        (lambda data: data["shards"][0].update(sha256="XYZ"), "$.shards[0].sha256"),
        (lambda data: data["shards"][0].update(path="../elsewhere.tar"), "$.shards[0].path"),
        (lambda data: data.update(created_at="yesterday"), "$.created_at"),
        (lambda data: data.update(surprise=1), "$"),
    ],
)
def test_invalid_value_names_its_json_path(tiny_manifest, tmp_path, change, json_path):
    path = _copy_set(tiny_manifest, tmp_path)
    _edit(path, change)
    assert f"invalid value at {json_path}:" in _error(path)


def test_edited_shard_list_fails_the_fingerprint(tiny_manifest: Path, tmp_path: Path):
    path = _copy_set(tiny_manifest, tmp_path)
    _edit(path, lambda data: data["shards"][0].update(sha256="a" * 64))
    assert "fingerprint" in _error(path)


def test_num_samples_must_match_the_shards(tiny_manifest: Path, tmp_path: Path):
    path = _copy_set(tiny_manifest, tmp_path)
    _edit(path, lambda data: data.update(num_samples=17))
    assert "num_samples is 17 but the shards hold 16" in _error(path)


def test_missing_shard_names_manifest_and_shard(tiny_manifest: Path, tmp_path: Path):
    path = _copy_set(tiny_manifest, tmp_path)
    (path.parent / "shard-000001.tar").unlink()
    assert "shard-000001.tar is missing" in _error(path)
    manifest = read_manifest(path, check_files=False)
    assert [line for line in verify_manifest(manifest) if "shard-000001.tar" in line]


def test_not_json_and_no_file_name_the_file(tmp_path: Path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    assert "not JSON" in _error(bad)
    assert "no such file" in _error(tmp_path / "absent.json")
    bad.write_text("[1, 2]")
    assert "not a JSON object" in _error(bad)


def test_manifest_error_is_a_data_error():
    assert issubclass(ManifestError, DataError)


def test_verify_catches_a_flipped_byte(tmp_path: Path):
    path = make_tiny_shards(tmp_path / "set", n=16)
    shard = path.parent / "shard-000000.tar"
    content = bytearray(shard.read_bytes())
    content[1000] ^= 0xFF
    shard.write_bytes(bytes(content))
    problems = verify_manifest(read_manifest(path))  # the manifest itself is still valid
    assert len(problems) == 1
    assert str(shard) in problems[0] and "sha256" in problems[0]


def test_verify_catches_a_truncated_shard(tmp_path: Path):
    path = make_tiny_shards(tmp_path / "set", n=16)
    shard = path.parent / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    problems = verify_manifest(path)
    assert any("bytes, manifest says" in line for line in problems)
    assert any("sha256" in line for line in problems)
    assert all(str(shard) in line for line in problems)
