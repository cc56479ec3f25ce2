"""The README's promise about `make demo`, checked the way the demo runs it (slow: ~10 min)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_encoder_beats_a_random_one_on_every_headline_protocol(cli, tmp_path):
    """The margins the README states (docs/small-scale.md, `bench/demo_seeds.py`, 3 seeds):
    zero-shot and linear top-1 12.6+ points ahead, segmentation mIoU 1.8+ points, image->text
    R@1 1.5+ points, retrieval mean recall 8.5+ points; asserted with room for another
    machine's seed-to-seed noise."""
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
    assert trained["zeroshot"]["top1"] > random["zeroshot"]["top1"] + 0.08
    assert trained["linear"]["top1"] > random["linear"]["top1"] + 0.06
    assert trained["segmentation"]["miou"] > random["segmentation"]["miou"] + 0.006
    assert trained["retrieval"]["mean_recall"] > random["retrieval"]["mean_recall"] + 0.05
    assert trained["retrieval"]["i2t_r1"] > random["retrieval"]["i2t_r1"] + 0.008
