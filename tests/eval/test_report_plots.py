"""Report figures: bar charts, the zero-shot confusion matrix and segmentation examples are
written under plots/, linked from report.md, and re-rendered from report.json by `report`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.features.types import ClassTextFeatures, SplitFeatures
from levl_eval.protocols.segmentation.examples import decode_uint8, encode_uint8
from levl_eval.protocols.zeroshot.protocol import ZeroShot
from levl_eval.testing.worlds import StaticFeatures, static_data


def _zeroshot(labels: list[int], nearest: list[int], num_classes: int) -> dict:
    """Zero-shot where image i lies exactly on the text of class nearest[i]."""
    text_CPE = torch.eye(num_classes)[:, None, :]
    z_NE = torch.eye(num_classes)[nearest]
    images = SplitFeatures(cls_ND=z_NE, z_NE=z_NE, pred_NE=z_NE, labels_N=torch.tensor(labels))
    source = StaticFeatures(images={"eval-test": images}, text=ClassTextFeatures(text_CPE, text_CPE))
    return ZeroShot().run(source, static_data(num_classes, prompts=("{}",)))


def test_zeroshot_confusion_counts_match_a_hand_count() -> None:
    result = _zeroshot(labels=[0, 0, 1, 1, 2, 2, 2], nearest=[0, 1, 1, 1, 0, 2, 2], num_classes=3)
    # rows = true class, columns = predicted class
    assert result["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert result["confusion_classes"] == ["c0", "c1", "c2"]
    assert result["top1"] == pytest.approx(5 / 7)


def test_no_confusion_matrix_beyond_twenty_classes() -> None:
    result = _zeroshot(labels=list(range(21)), nearest=list(range(21)), num_classes=21)
    assert "confusion" not in result and result["top1"] == 1.0


def test_uint8_arrays_round_trip_through_json() -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    encoded = json.loads(json.dumps(encode_uint8(array)))
    assert np.array_equal(decode_uint8(encoded), array)


def _linked_plots(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", markdown)


def test_report_plots_are_written_linked_and_rerendered(
    synth_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "all", "--ckpt", str(micro_run), "--data", str(synth_world), "--out", str(out),
        "--device", "cpu", "--batch-size", "16", "--protocol", "zeroshot", "--protocol", "linear",
        "--protocol", "segmentation", "--probe", "linear", "--probe", "mlp"])
    assert result.exit_code == 0, result.output
    assert "MLP probe top-1" in result.stdout
    report = json.loads((out / "report.json").read_text())
    linked = _linked_plots((out / "report.md").read_text())
    expected = {"plots/bars-zeroshot.png", "plots/bars-linear.png", "plots/bars-segmentation.png",
                "plots/confusion-zeroshot-0.png", "plots/confusion-zeroshot-1.png",
                "plots/segmentation-segmentation.png"}
    assert set(linked) == expected
    assert {f"plots/{p.name}" for p in (out / "plots").iterdir()} == expected
    for path in expected:
        with Image.open(out / path) as image:
            assert image.format == "PNG" and min(image.size) >= 300

    for encoder in report["encoders"]:
        zeroshot, seg = encoder["protocols"]["zeroshot"], encoder["protocols"]["segmentation"]
        assert sum(map(sum, zeroshot["confusion"])) == zeroshot["data"]["test"]["samples"]
        assert set(encoder["protocols"]["linear"]["probes"]) == {"linear", "mlp"}
        examples = seg["examples"]
        assert len(examples["images"]) == len(examples["prediction"]) == 3
        assert decode_uint8(examples["images"][0]).shape == (32, 32, 3)
        assert decode_uint8(examples["prediction"][0]).shape == decode_uint8(examples["ground_truth"][0]).shape

    shutil.rmtree(out / "plots")
    (out / "report.md").unlink()
    rerender = CliRunner().invoke(app, ["report", str(out)])
    assert rerender.exit_code == 0, rerender.output
    assert set(_linked_plots((out / "report.md").read_text())) == expected
    assert {f"plots/{p.name}" for p in (out / "plots").iterdir()} == expected
