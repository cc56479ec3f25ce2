"""The whole path a user takes, through the real console scripts, at micro size:
synthesize a world → train a few steps → evaluate the checkpoint beside a random encoder."""

from __future__ import annotations

import json


def test_synth_train_eval_writes_a_report_with_the_random_baseline(cli, tmp_path):
    data, run, report = tmp_path / "data", tmp_path / "run", tmp_path / "eval"
    synth = cli("levl-data", "synth", "--out", data, "--size", "micro", "--seed", "0")
    assert synth.returncode == 0, synth.stderr
    train = cli("levl-train", "run", "micro_synthetic", "--data", data / "train" / "manifest.json",
                "--out", run, "--set", "steps=10", "--set", "ckpt_every=10")
    assert train.returncode == 0, train.stderr
    evaluation = cli("levl-eval", "all", "--ckpt", run, "--data", data, "--out", report)
    assert evaluation.returncode == 0, evaluation.stderr

    result = json.loads((report / "report.json").read_text())
    encoders = result["encoders"]
    assert len(encoders) == 2
    trained = next(e for e in encoders if not e["random_init"])
    random = next(e for e in encoders if e["random_init"])
    assert trained["step"] == 10 and random["step"] == 0
    for encoder in encoders:
        assert 0.0 <= encoder["protocols"]["zeroshot"]["top1"] <= 1.0
        assert 0.0 <= encoder["protocols"]["linear"]["top1"] <= 1.0
    markdown = (report / "report.md").read_text()
    assert "zeroshot" in markdown.lower() and "random" in markdown.lower()
    assert "report.md" in evaluation.stdout
