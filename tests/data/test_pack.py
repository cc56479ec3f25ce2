"""levl-data pack: local image + caption pairs (folder or table) into shards + manifest."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from levl_data.cli import app
from levl_data.manifest import read_manifest, verify_manifest
from levl_data.pack import pack_shards
from levl_data.testing import CORRUPT_IMAGE

runner = CliRunner()


def write_image(path: Path, size: tuple[int, int], fmt: str = "JPEG", value: int = 120) -> None:
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(path, format=fmt)


def make_folder(root: Path) -> Path:
    """5 good pairs (jpg and png), plus a corrupt image, a missing and an empty caption."""
    root.mkdir()
    for index in range(5):
        fmt, ext = ("PNG", "png") if index % 2 else ("JPEG", "jpg")
        write_image(root / f"img{index}.{ext}", (40, 30), fmt, value=40 * index)
        (root / f"img{index}.txt").write_text(f"caption {index}\n")
    (root / "bad.jpg").write_bytes(CORRUPT_IMAGE)
    (root / "bad.txt").write_text("a corrupt image")
    write_image(root / "nocaption.jpg", (40, 30))
    write_image(root / "empty.jpg", (40, 30))
    (root / "empty.txt").write_text("  \n")
    return root


def shard_samples(manifest_path: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for shard in read_manifest(manifest_path).shard_paths():
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                found.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return found


def test_pack_folder_writes_good_pairs_and_counts_bad_ones(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "pack",
            "--from",
            str(folder),
            "--out",
            str(out),
            "--samples-per-shard",
            "2",
            "--image-size",
            "24",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest.data["source"]["kind"] == "custom"
    assert manifest.data["stats"] == {
        "attempted": 8,
        "written": 5,
        "failures": {"empty_caption": 1, "missing_caption": 1, "undecodable": 1},
    }
    assert [shard.num_samples for shard in manifest.shards] == [2, 2, 1]
    assert verify_manifest(manifest) == []
    samples = shard_samples(out / "manifest.json")
    assert sorted(s["txt"].decode() for s in samples.values()) == [f"caption {i}" for i in range(5)]
    for sample in samples.values():
        image = PIL.Image.open(io.BytesIO(sample["jpg"]))
        assert image.format == "JPEG" and image.size == (32, 24)  # 40x30, shorter side 24
    assert result.stdout.startswith("packed 5/8 samples into 3 shards")


def test_pack_parquet_table_with_relative_paths(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    table = pa.table(
        {
            "image": [f"pairs/img{i}.{'png' if i % 2 else 'jpg'}" for i in range(5)],
            "caption": [f"row {i}" for i in range(5)],
        }
    )
    pq.write_table(table, tmp_path / "list.parquet")
    manifest_path = pack_shards(tmp_path / "list.parquet", tmp_path / "out")
    manifest = read_manifest(manifest_path)
    assert manifest.num_samples == 5 and manifest.data["stats"]["failures"] == {}
    assert manifest.data["source"]["metadata"][0]["path"] == str(tmp_path / "list.parquet")
    samples = shard_samples(manifest_path)
    original = (folder / "img0.jpg").read_bytes()
    assert any(s["jpg"] == original for s in samples.values())  # JPEG kept byte-for-byte
    assert json.loads(samples["000000000"]["json"])["source"] == "img0.jpg"


def test_pack_skips_images_above_the_pixel_ceiling_before_decoding(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    manifest = read_manifest(pack_shards(folder, tmp_path / "out", max_pixels=40 * 30))
    assert manifest.num_samples == 5
    write_image(folder / "big.jpg", (41, 30))
    (folder / "big.txt").write_text("one column too wide")
    manifest = read_manifest(pack_shards(folder, tmp_path / "out2", max_pixels=40 * 30))
    assert manifest.data["stats"]["failures"]["image_too_large"] == 1


def test_pack_counts_a_decompression_bomb_as_too_large_not_undecodable(tmp_path):
    """PIL refuses an image of more than twice its pixel ceiling when opening it; that is a
    size failure, like the ceiling's own check, not a decoding one."""
    folder = make_folder(tmp_path / "pairs")
    PIL.Image.new("1", (14_000, 14_000)).save(folder / "bomb.png")  # 196 Mpx, a 25 kB file
    (folder / "bomb.txt").write_text("a blank page the size of a wall")
    manifest = read_manifest(pack_shards(folder, tmp_path / "out"))
    failures = manifest.data["stats"]["failures"]
    assert failures["image_too_large"] == 1 and failures["undecodable"] == 1  # make_folder's own
    assert manifest.num_samples == 5


def test_pack_skips_and_counts_a_caption_file_that_is_not_utf8(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    write_image(folder / "latin1.jpg", (40, 30))
    (folder / "latin1.txt").write_bytes("une télé rouge".encode("latin-1"))
    manifest = read_manifest(pack_shards(folder, tmp_path / "out"))
    assert manifest.data["stats"]["failures"]["undecodable_caption"] == 1
    assert manifest.num_samples == 5


def test_a_pack_with_nothing_readable_leaves_no_directory_behind(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "bad.jpg").write_bytes(CORRUPT_IMAGE)
    (folder / "bad.txt").write_text("a caption for an image that is not one")
    result = CliRunner().invoke(app, ["pack", "--from", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "no readable image + caption pair" in result.output
    assert not (tmp_path / "out").exists()


def test_pack_refuses_a_table_without_a_caption_column(tmp_path):
    (tmp_path / "list.csv").write_text("image,label\na.jpg,1\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["pack", "--from", str(tmp_path / "list.csv"), "--out", str(out)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: table {tmp_path / 'list.csv'}: needs an image column")
    assert not out.exists()


def test_pack_refuses_an_out_dir_holding_another_dataset(tmp_path):
    folder = make_folder(tmp_path / "pairs")
    out = tmp_path / "out"
    pack_shards(folder, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = runner.invoke(app, ["pack", "--from", str(folder), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: out dir {out}: already holds manifest.json")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
