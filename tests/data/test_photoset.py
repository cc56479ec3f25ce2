"""`levl-data photos`: the real-photo caption set built from scikit-image's bundled photos —
manifests, labels in captions, pixel variety, byte determinism, train/val separation and the
CLI's one-line errors. Uses 64 train + 32 val samples at 64 px."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shard_samples import read_samples, shard_hashes
from typer.testing import CliRunner

from levl_data import photoset
from levl_data.cli import app
from levl_data.manifest import read_manifest, verify_manifest

N_TRAIN, N_VAL, SIZE = 64, 32, 64
runner = CliRunner()


def build(root: Path, seed: int) -> dict[str, Path]:
    return photoset.make_photo_set(root, n_train=N_TRAIN, n_val=N_VAL, image_size=SIZE, seed=seed)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("photos") / "set", 0)


def test_manifests_validate_and_count_samples(photos):
    assert list(photos) == ["train", "val"]
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        m = read_manifest(photos[split])
        assert m.path.parent.name == split and m.split == split and m.num_samples == n
        assert verify_manifest(m) == []
        assert m.data["source"]["kind"] == "custom"
        assert m.data["image"] == {"policy": "composite", "size": SIZE, "encoding": "jpeg"}
        assert m.labels["classes"] == [o.name for o in photoset.OBJECTS]
        assert all("{}" in p for p in m.labels["prompts"])
        assert len(read_samples(photos[split])) == n
    classes = json.loads((photos["train"].parent.parent / "classes.json").read_text())
    assert classes["classes"] == [o.name for o in photoset.OBJECTS]
    assert "{}" in classes["template"]


def test_captions_name_the_labelled_object_background_and_position(photos):
    kinds = set()
    for s in read_samples(photos["train"]) + read_samples(photos["val"]):
        caption, meta = s["txt"].decode(), json.loads(s["json"])
        obj = photoset.OBJECTS[meta["label"]]
        assert meta["class_name"] == meta["object"] == obj.name and obj.name in caption
        kinds.add(meta["kind"])
        if meta["kind"] == "composite":
            bg = {b.name: b.phrase for b in photoset.BACKGROUNDS}[meta["background"]]
            assert bg in caption and meta["position"] in caption
            x0, y0, x1, y1 = meta["box"]
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
        else:
            assert meta["background"] is None and meta["position"] is None
    assert kinds == {"composite", "photo"}


def test_images_are_real_and_varied(photos):
    pixels = []
    for s in read_samples(photos["train"]):
        image = Image.open(io.BytesIO(s["jpg"]))
        assert image.format == "JPEG" and image.size == (SIZE, SIZE) and image.mode == "RGB"
        pixels.append(np.asarray(image, dtype=np.float32))
    stack = np.stack(pixels)
    assert stack.std(axis=0).mean() > 30  # samples differ from each other
    assert np.mean([p.std() for p in pixels]) > 15  # and each has structure
    labels = {json.loads(s["json"])["label"] for s in read_samples(photos["train"])}
    assert len(labels) >= 6


def test_same_seed_same_bytes_other_seed_differs(photos, tmp_path):
    again = build(tmp_path / "again", 0)
    assert shard_hashes(again) == shard_hashes(photos)
    other = build(tmp_path / "other", 1)
    assert shard_hashes(other)["train"] != shard_hashes(photos)["train"]


def test_val_differs_from_train(photos):
    train = read_samples(photos["train"])
    val = read_samples(photos["val"])
    assert {s["jpg"] for s in train}.isdisjoint(s["jpg"] for s in val)
    assert [s["txt"] for s in train[:N_VAL]] != [s["txt"] for s in val]


def test_validation_uses_its_own_coins_faces_and_background_band():
    names = [o.name for o in photoset.OBJECTS]
    train, val = photoset.object_instances("train"), photoset.object_instances("val")
    coin, face = names.index("coin"), names.index("face")
    assert train[coin] and val[coin]
    assert {t.box for t in train[coin]}.isdisjoint(v.box for v in val[coin])
    assert {t.photo.tobytes() for t in train[face]}.isdisjoint(
        v.photo.tobytes() for v in val[face])
    for spec, photo in zip(photoset.BACKGROUNDS, photoset.background_photos(), strict=True):
        h, w = photo.shape[:2]
        (tx, tw), (vx, vw) = photoset.split_band("train", w), photoset.split_band("val", w)
        assert tx + tw <= vx and vx + vw == w
        assert min(tw, vw, h) >= spec.side[0]  # every band fits the smallest crop


def test_cli_writes_the_set(tmp_path):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["photos", "--out", str(out), "--train", "8", "--val", "4",
                                 "--size", "32", "--seed", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("train\t") and lines[0].endswith("\t8 samples")
    assert lines[1].startswith("val\t") and lines[1].endswith("\t4 samples")
    assert lines[2] == f"classes\t{out / 'classes.json'}"


@pytest.mark.parametrize(("args", "message"), [
    (["--train", "0"], "error: --train must be a positive integer, got 0"),
    (["--size", "8"], "error: --size must be an integer in [32, 512], got 8"),
    (["--seed", "-1"], "error: --seed must be a non-negative integer, got -1"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, args, message):
    result = runner.invoke(app, ["photos", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2 and result.stderr == message + "\n"
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "junk.txt").write_text("mine")
    result = runner.invoke(app, ["photos", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1 and "not an empty directory" in result.stderr


def test_cli_without_scikit_image_says_how_to_install(tmp_path, monkeypatch):
    photoset.source_files.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage", None)  # find_spec now reports it missing
    try:
        result = runner.invoke(app, ["photos", "--out", str(tmp_path / "y")])
    finally:
        photoset.source_files.cache_clear()
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: scikit-image is not installed")
    assert "pip install 'levl-data[photos]'" in line
