"""Property-based fuzz (hypothesis) of the readers of files a user or another machine hands
levl: the shard manifest, a checkpoint's metadata.json and a shard's per-sample JSON. Whatever
the bytes, a reader either accepts them or raises its one-line error type — never another
exception (the traceback a user would see). Bounded: a fixed number of examples, derandomised,
so a CI run is reproducible."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levl_data.errors import DataError
from levl_data.loader import decode_raw_sample
from levl_data.manifest import read_manifest
from levl_data.testing import _jpeg, make_tiny_shards
from levl_eval.testing.worlds import save_micro_checkpoint
from levl_model.checkpoint import METADATA_FILE, load_checkpoint
from levl_model.errors import CheckpointError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Any JSON value, nested a few levels: what a corrupted or hand-edited field could hold.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def paths(document: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON document (dict keys and list indices), the root included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document[:3]):
            found += paths(value, (*prefix, index))
    return found


def mutated(document: object, path: tuple, action: str, value: object) -> object:
    """`document` with the node at `path` replaced by `value`, or deleted."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


@st.composite
def edits(draw, document: object) -> bytes:
    """A valid document with one node replaced or deleted, or its text cut, or raw bytes."""
    kind = draw(st.sampled_from(["replace", "delete", "truncate", "bytes"]))
    text = json.dumps(document)
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text) - 1))].encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    path = draw(st.sampled_from(paths(document)))
    return json.dumps(mutated(document, path, kind, draw(JSON_VALUES))).encode()


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return make_tiny_shards(tmp_path_factory.mktemp("fuzz-shards"), n=16)


@given(data=st.data())
@FUZZ
def test_a_manifest_reads_or_is_a_data_error(manifest_path, tmp_path_factory, data):
    original = json.loads(manifest_path.read_text())
    folder = tmp_path_factory.mktemp("manifest")
    for shard in manifest_path.parent.glob("*.tar"):
        (folder / shard.name).symlink_to(shard)
    target = folder / "manifest.json"
    target.write_bytes(data.draw(edits(original)))
    try:
        read_manifest(target)
    except DataError as err:
        assert "\n" not in str(err)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_micro_checkpoint(tmp_path_factory.mktemp("fuzz-ckpt") / "ckpt")


@given(data=st.data())
@settings(FUZZ, max_examples=60)
def test_a_checkpoint_metadata_loads_or_is_a_checkpoint_error(checkpoint, tmp_path_factory,
                                                               data):
    original = json.loads((checkpoint / METADATA_FILE).read_text())
    copy = tmp_path_factory.mktemp("ckpt") / "ckpt"
    shutil.copytree(checkpoint, copy)
    (copy / METADATA_FILE).write_bytes(data.draw(edits(original)))
    try:
        load_checkpoint(copy)
    except CheckpointError as err:
        assert "\n" not in str(err)


MEMBERS = {"image": "jpg", "caption": "txt", "json": "json"}
JPEG = _jpeg("red", "solid", 16)


@given(member=st.one_of(st.binary(max_size=64),
                        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
                        st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth)))
@FUZZ
def test_a_per_sample_json_decodes_or_is_skipped_and_counted(member):
    sample, reason = decode_raw_sample(
        {"__key__": "k", "jpg": JPEG, "txt": b"a red square", "json": member}, MEMBERS)
    assert (sample is None) != (reason is None)
    if reason is not None:
        assert reason == "undecodable_json"
    else:
        assert isinstance(sample["meta"], dict)
