"""NYU Depth v2: the standard layout read back in metres, malformed trees as one error naming the
file, absent as skipped (also on the synthetic world), and `levl-eval depth` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.data.batches import frame_target_transform, split_batches, target_transform
from levl_eval.data.world import load_eval_data
from levl_eval.datasets import read_nyuv2
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.protocols.depth.maps import eigen_crop_mask
from levl_eval.tasks import plan_tasks
from levl_eval.testing.dense import (
    NYU_TEST_SCENE,
    NYU_TRAIN_SCENE,
    nyu_depth_mm,
    write_depth_png,
    write_nyu_layout,
)
from levl_eval.testing.worlds import write_image
from levl_model.preprocess import Preprocess, eval_transform

SQUARE = Preprocess(size=24)  # the 32x24 train fixture: resize keeps 32x24, centre crop cols 4..27


def test_nyu_lists_are_read_in_order(tmp_path: Path) -> None:
    data = read_nyuv2(write_nyu_layout(tmp_path))
    base = tmp_path / "nyu"
    assert [s.image for s in data.train.files] == [base / NYU_TRAIN_SCENE / f"rgb_{i:05d}.jpg" for i in range(3)]
    assert data.test.files[2].mask == base / NYU_TEST_SCENE / "sync_depth_00002.png"
    assert (data.train.mask_kind, data.test.mask_kind) == ("depth_mm", "depth_mm_eigen")
    assert (data.min_depth, data.max_depth) == (1e-3, 10.0) and data.describe()["dataset"] == "nyu"


def test_depth_pngs_come_back_in_metres_through_the_crop(tmp_path: Path) -> None:
    data = read_nyuv2(write_nyu_layout(tmp_path))
    batch = next(split_batches(data.train, eval_transform(SQUARE), target_transform(data.train, SQUARE),
                               batch_size=3))
    assert batch["masks"].dtype == torch.float32 and batch["masks"].shape == (3, 24, 24)
    expected = torch.from_numpy(nyu_depth_mm(1, (32, 24))[:, 4:28].astype(np.float32) / 1000)
    torch.testing.assert_close(batch["masks"][1], expected)
    assert batch["masks"][:, :2].eq(0).all() and batch["masks"][:, 2:].gt(0.99).all()


def test_test_maps_come_back_whole_with_eigens_crop_in_640x480_pixels(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    full = np.full((480, 640), 3000, dtype=np.uint16)  # measured everywhere
    write_depth_png(tmp_path / "nyu" / NYU_TEST_SCENE / "sync_depth_00000.png", full)
    data = read_nyuv2(tmp_path)
    batch = next(split_batches(data.test, eval_transform(SQUARE), frame_target_transform(data.test),
                               batch_size=3))
    depth_HW = batch["masks"][0]  # the original frame: no resize, no centre crop
    assert depth_HW.shape == (480, 640) and depth_HW[45:471, 41:601].eq(3.0).all()
    assert int(depth_HW.gt(0).sum()) == (471 - 45) * (601 - 41)  # rows 45..470, columns 41..600
    assert depth_HW[44].eq(0).all() and depth_HW[471].eq(0).all()
    assert depth_HW[:, 40].eq(0).all() and depth_HW[:, 601].eq(0).all()
    with pytest.raises(ValueError, match="depth map of 32x24: Eigen's crop is defined on NYUv2's 640x480 frame"):
        eigen_crop_mask(24, 32)  # never scaled to a resized map


def test_a_test_map_not_at_640x480_is_one_error_naming_it(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path, test_size=(320, 240))
    with pytest.raises(EvalDataError, match=r"sync_depth_00000\.png: 320x240, but Eigen's test crop is "
                                            r"defined on NYUv2's 640x480 frame"):
        read_nyuv2(tmp_path)


def test_an_8_bit_depth_map_is_one_error_naming_it(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    bad = tmp_path / "nyu" / NYU_TEST_SCENE / "sync_depth_00001.png"
    Image.fromarray(np.zeros((24, 32), dtype=np.uint8)).save(bad)
    with pytest.raises(EvalDataError, match=r"sync_depth_00001\.png: PIL mode L, not a 16-bit depth PNG"):
        read_nyuv2(tmp_path)


def test_a_depth_map_of_another_size_is_an_error(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    write_image(tmp_path / "nyu" / NYU_TRAIN_SCENE / "rgb_00002.jpg", size=(16, 12))
    with pytest.raises(EvalDataError, match=r"sync_depth_00002\.png: size \(32, 24\) differs from its image's \(16, 12\)"):
        read_nyuv2(tmp_path)


def test_a_listed_file_that_is_missing_names_the_list_line(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    (tmp_path / "nyu" / NYU_TRAIN_SCENE / "rgb_00001.jpg").unlink()
    with pytest.raises(EvalDataError, match=r"rgb_00001\.jpg: missing \(listed in nyu_train\.txt line 2\)"):
        read_nyuv2(tmp_path)


def test_a_short_line_or_a_missing_list_is_an_error(tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    listing = tmp_path / "nyu" / "nyu_test.txt"
    listing.write_text(listing.read_text() + "bathroom/rgb_00009.jpg\n")
    with pytest.raises(EvalDataError, match=r"nyu_test\.txt: line 4 has 1 field\(s\)"):
        read_nyuv2(tmp_path)
    listing.unlink()
    with pytest.raises(EvalDataError, match=r"nyu_test\.txt: missing; NYUv2 needs nyu_train\.txt and nyu_test\.txt"):
        read_nyuv2(tmp_path)


def test_absent_nyu_is_not_found_and_the_synthetic_world_skips_depth(
    tmp_path: Path, eval_world: Path
) -> None:
    with pytest.raises(DatasetNotFound, match=f"not found at {tmp_path / 'nyu'}$"):
        read_nyuv2(tmp_path)
    tasks, skipped = plan_tasks(("depth",), load_eval_data(eval_world), tmp_path)
    reasons = {item.key: item.reason for item in skipped}
    assert tasks == [] and set(reasons) == {"depth", "depth:nyu"}
    assert "the synthetic world has no depth maps" in reasons["depth"] and "nyu/" in reasons["depth"]
    assert reasons["depth:nyu"] == f"not found at {tmp_path / 'nyu'}"


def test_levl_eval_depth_on_the_nyu_layout(eval_world: Path, micro_run: Path, tmp_path: Path) -> None:
    root = write_nyu_layout(tmp_path / "datasets")
    out = tmp_path / "depth"
    result = CliRunner().invoke(app, ["depth", "--ckpt", str(micro_run), "--data", str(eval_world),
                                      "--datasets", str(root), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["depth:nyu"]
    assert report["tasks"]["depth:nyu"]["data"]["test"]["num_samples"] == 3
    assert "skipped 1 task(s) — depth: not found at" in result.stdout and "no depth maps" in result.stdout
    for encoder in report["encoders"]:  # the checkpoint and its random baseline
        depth = encoder["protocols"]["depth:nyu"]
        assert depth["images_scored"] == 3 and depth["data"]["test"]["label_size"] == [480, 640]
        assert depth["rmse"] > 0 and 0 <= depth["delta1"] <= 1 and depth["abs_rel"] > 0
        assert depth["mean_depth_baseline"]["images_scored"] == 3
    # RMSE in metres (3 decimals), AbsRel as a ratio, δ<1.25 in percent: one row each
    rows = {line.split("  ")[0]: line.split()[-2:] for line in result.stdout.splitlines()
            if line.startswith("depth ")}
    checkpoint, random = (e["protocols"]["depth:nyu"] for e in report["encoders"])
    assert rows["depth RMSE [m] (nyu)"] == [f"{checkpoint['rmse']:.3f}", f"{random['rmse']:.3f}"]
    assert rows["depth AbsRel [ratio] (nyu)"][0] == f"{checkpoint['abs_rel']:.3f}"
    assert rows["depth δ<1.25 (nyu)"][0] == f"{100 * checkpoint['delta1']:.2f}"
    assert "| depth RMSE [m] (nyu) |" in (out / "report.md").read_text()


def test_malformed_nyu_is_one_line_before_any_checkpoint_loads(eval_world: Path, tmp_path: Path) -> None:
    write_nyu_layout(tmp_path)
    (tmp_path / "nyu" / NYU_TEST_SCENE / "sync_depth_00002.png").unlink()
    result = CliRunner().invoke(app, ["depth", "--ckpt", str(tmp_path / "no-such-ckpt"), "--data",
                                      str(eval_world), "--datasets", str(tmp_path), "--out",
                                      str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sync_depth_00002.png: missing" in lines[0]
    assert not (tmp_path / "o").exists()
