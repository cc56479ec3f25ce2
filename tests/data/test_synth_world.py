"""`write_world`: the three shard sets with manifests, byte determinism, idempotent reruns and
refusing directories that hold anything else. Uses size micro (512 + 2 x 192 samples)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shard_samples import read_samples, shard_hashes

from levl_data.errors import DataError
from levl_data.manifest import read_manifest, verify_manifest
from levl_data.synth import SPLITS, vocab, write_world
from levl_data.synth.parallel import generate_samples


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_world(tmp_path_factory.mktemp("world") / "synth", "micro", 0)


@pytest.fixture(scope="module")
def other_seed_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_world(tmp_path_factory.mktemp("world1") / "synth", "micro", 1)


def test_manifests_describe_each_split(world):
    assert list(world) == list(SPLITS)
    counts = {"train": 512, "eval-train": 192, "eval-test": 192}
    for split, path in world.items():
        m = read_manifest(path)
        assert path == m.path and path.parent.name == split and m.split == split
        assert m.num_samples == counts[split]
        assert verify_manifest(m) == []
        assert m.data["source"]["kind"] == "synthetic"
        params = m.data["source"]["params"]
        assert {k: params[k] for k in ("size", "seed", "image_size")} == {
            "size": "micro", "seed": 0, "image_size": 64}
        assert m.data["image"] == {"policy": "synthetic", "size": 64, "encoding": "jpeg"}
        assert m.data["stats"] == {"attempted": counts[split], "written": counts[split],
                                   "failures": {}}
        assert m.labels["classes"] == list(vocab.SHAPES)
        assert m.labels["segmentation_classes"] == ["background", *vocab.SHAPES]
        assert all("{}" in p for p in m.labels["prompts"])
        assert "a photo of a {}." in m.labels["prompts"]
        extra = set(m.members.get("extra", []))
        expected = {"mask.png", "mixed_same.jpg", "mixed_rand.jpg"} if split != "train" else set()
        assert extra == expected


def test_samples_hold_images_captions_metadata_and_eval_extras(world):
    typical = []
    for split, path in world.items():
        pope_tags = set()
        for s in read_samples(path):
            image = Image.open(io.BytesIO(s["jpg"]))
            assert image.format == "JPEG" and image.size == (64, 64)
            meta = json.loads(s["json"])
            main = meta["objects"][0]
            assert meta["class_name"] == main["shape"] == vocab.SHAPES[meta["label"]]
            assert f"{main['color']} {main['shape']}" in s["txt"].decode()
            typical.append(meta["background"] == vocab.TYPICAL_BACKGROUND[main["shape"]])
            if split == "train":
                assert set(s) == {"jpg", "txt", "json"}
                continue
            mask = np.asarray(Image.open(io.BytesIO(s["mask.png"])))
            assert mask.shape == (64, 64) and mask.max() <= len(vocab.SHAPES)
            assert (mask == meta["label"] + 1).sum() > 64  # the main object is clearly visible
            for name in ("mixed_same.jpg", "mixed_rand.jpg"):
                assert Image.open(io.BytesIO(s[name])).size == (64, 64)
            assert meta["variants"]["mixed_same"] == vocab.TYPICAL_BACKGROUND[main["shape"]]
            count = next(q for q in meta["qa"] if q["question"] == "How many shapes are there?")
            assert count["answer"] == vocab.COUNT_WORDS[len(meta["objects"])]
            pope_tags |= {q["pope"] for q in meta["qa"] if q["type"] == "exists"}
        if split != "train":
            assert pope_tags == {"random", "popular", "adversarial"}
    assert 0.74 <= np.mean(typical) <= 0.86  # the ImageNet-9 style correlation, every split


def test_same_seed_same_bytes_other_seed_other_bytes(world, other_seed_world, tmp_path):
    again = write_world(tmp_path / "again", "micro", 0)
    assert shard_hashes(again) == shard_hashes(world)
    for split in SPLITS:
        a, b = read_manifest(again[split]), read_manifest(world[split])
        assert a.fingerprint == b.fingerprint
    other = shard_hashes(other_seed_world)
    for split, hashes in shard_hashes(world).items():
        assert not set(hashes) & set(other[split])
    # splits are independent streams, not the same samples under another name
    assert read_samples(world["eval-train"])[0]["jpg"] != read_samples(world["eval-test"])[0]["jpg"]


def test_rerun_on_the_same_world_returns_it_without_rewriting(world):
    before = {split: p.stat().st_mtime_ns for split, p in world.items()}
    assert write_world(world["train"].parent.parent, "micro", 0) == world
    assert {split: p.stat().st_mtime_ns for split, p in world.items()} == before


def test_refuses_a_directory_holding_something_else(world, other_seed_world, tmp_path):
    root = world["train"].parent.parent
    with pytest.raises(DataError, match="seed=1"):
        write_world(root, "micro", 1)
    with pytest.raises(DataError, match="size=tiny"):
        write_world(other_seed_world["train"].parent.parent, "tiny", 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="notes.txt"):
        write_world(foreign, "micro", 0)
    half = tmp_path / "half" / "train"
    half.mkdir(parents=True)
    (half / "train-000000.tar").write_bytes(b"partial")
    with pytest.raises(DataError, match="no manifest.json"):
        write_world(half.parent, "micro", 0)
    with pytest.raises(DataError, match="unknown"):
        write_world(tmp_path / "new", "huge", 0)
    assert not (tmp_path / "new").exists()
    with pytest.raises(DataError, match="seed"):
        write_world(tmp_path / "neg", "micro", -1)


def test_worker_processes_give_the_same_samples():
    serial = list(generate_samples(3, "eval-test", 260, 64, extras=True, workers=1))
    pooled = list(generate_samples(3, "eval-test", 260, 64, extras=True, workers=2))
    assert serial == pooled and len(serial) == 260
