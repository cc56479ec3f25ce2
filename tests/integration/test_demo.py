"""The README's promise about `make demo`, checked the way the demo runs it (slow: ~12 min)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_encoder_beats_a_random_one_on_retrieval_and_segmentation(cli, tmp_path):
    """The margins the README states beyond the seed spread (docs/small-scale.md, 3 seeds):
    retrieval R@1 7.4+ points, segmentation mIoU 1.1+ points. Zero-shot and the linear probe are
    not asserted: at this scale they are within the spread or behind (the shape gap, issue 11)."""
    data, run, report = tmp_path / "data", tmp_path / "run", tmp_path / "eval"
    assert cli("levl-data", "synth", "--out", data, "--size", "tiny").returncode == 0
    train = cli("levl-train", "run", "tiny_synthetic", "--data", data / "train" / "manifest.json",
                "--out", run, timeout=1800)
    assert train.returncode == 0, train.stderr
    evaluation = cli("levl-eval", "all", "--ckpt", run, "--data", data, "--out", report)
    assert evaluation.returncode == 0, evaluation.stderr

    encoders = json.loads((report / "report.json").read_text())["encoders"]
    trained = next(e["protocols"] for e in encoders if not e["random_init"])
    random = next(e["protocols"] for e in encoders if e["random_init"])
    assert trained["retrieval"]["i2t_r1"] > random["retrieval"]["i2t_r1"] + 0.05
    assert trained["segmentation"]["miou"] > random["segmentation"]["miou"] + 0.005
