"""levl-eval vlm end to end: a micro checkpoint and its random baseline on the synthetic world's
QA, under a tiny Llama saved to disk and loaded back through `--llm DIR` (from_pretrained); the
trained bridges saved and scored again, and a bridge made for another LLM width refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from levl_data.synth import vocab
from levl_eval.cli import app
from levl_eval.datasets.fixtures import write_pope_layout, write_vqav2_layout
from levl_eval.protocols.vlm.bridge import Bridge
from levl_eval.protocols.vlm.bridge_store import bridge_path, save_bridge
from levl_eval.protocols.vlm.items import PROMPT
from levl_eval.protocols.vlm.train import FittedBridge
from levl_eval.standardize import TokenStandardizer
from levl_eval.testing.llm import tiny_llm

runner = CliRunner()
QUESTION_WORDS = "What color shape size pattern is the object background How many shapes are there Is in image"


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    llm = tiny_llm([PROMPT, QUESTION_WORDS, *vocab.answers(), *vocab.PLURALS.values()])
    directory = tmp_path_factory.mktemp("llm") / "tiny-llama"
    llm.model.save_pretrained(directory)
    llm.tokenizer.save_pretrained(directory)
    return directory


def _invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_vlm_reports_scores_and_gain_over_random(
    synth_world: Path, micro_run: Path, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    out, bridges = tmp_path / "eval", tmp_path / "bridges"
    result = _invoke("vlm", "--ckpt", micro_run, "--data", synth_world, "--out", out, "--device",
                     "cpu", "--llm", tiny_llm_dir, "--vlm-max-steps", "4", "--vlm-max-questions", "60",
                     "--save-bridges", bridges)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["vlm"]
    checkpoint, baseline = (enc["protocols"]["vlm"] for enc in report["encoders"])
    for scores in (checkpoint, baseline):
        assert 0 <= scores["vqa_accuracy"] <= 1 and 0 <= scores["pope_f1"] <= 1
        assert set(scores["pope"]) == {"random", "popular", "adversarial"}
        assert scores["train_steps"] == 4
        assert scores["data"]["train"]["questions"] == 60
    assert checkpoint["settings"]["llm"] == str(tiny_llm_dir)
    assert checkpoint["data"]["llm"]["source"] == f"from_pretrained:{tiny_llm_dir}"
    gain = checkpoint["gain_over_random"]
    assert gain["vqa_accuracy"] == pytest.approx(checkpoint["vqa_accuracy"] - baseline["vqa_accuracy"])
    assert "VQA acc" in result.output and "POPE F1" in result.output

    # the saved bridges score the same answers without training again
    assert sorted(p.name for p in bridges.iterdir()) == [
        "micro-run-step_0000007--synth.safetensors", "random-seed-0--synth.safetensors"]
    again = _invoke("vlm", "--ckpt", micro_run, "--data", synth_world, "--out", tmp_path / "again",
                    "--device", "cpu", "--llm", tiny_llm_dir, "--vlm-max-questions", "60",
                    "--bridges", bridges)
    assert again.exit_code == 0, again.output
    reloaded = json.loads((tmp_path / "again" / "report.json").read_text())["encoders"][0]["protocols"]["vlm"]
    assert reloaded["train_steps"] == 0 and reloaded["data"]["train"]["bridge_loaded_from"].endswith(
        "micro-run-step_0000007--synth.safetensors")
    assert (reloaded["vqa_accuracy"], reloaded["pope_f1"]) == (checkpoint["vqa_accuracy"], checkpoint["pope_f1"])


def test_bridge_saved_under_an_llm_of_another_width_is_one_line(
    synth_world: Path, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    narrow = tiny_llm([PROMPT], width=32)
    fitted = FittedBridge(TokenStandardizer(torch.zeros(8), torch.ones(8)), Bridge(8, 16, 32), [])
    save_bridge(bridge_path(tmp_path / "bridges", "micro-run/step_0000007", "synth"), fitted, narrow)
    result = _invoke("vlm", "--ckpt", tmp_path / "no-such-ckpt", "--data", synth_world, "--out",
                     tmp_path / "o", "--device", "cpu", "--llm", tiny_llm_dir,
                     "--bridges", tmp_path / "bridges")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "micro-run-step_0000007--synth" in lines[0]
    assert "bridge maps into width 32 (trained under --llm tiny-llama)" in lines[0]
    assert f"--llm {tiny_llm_dir} embeds tokens at width 48" in lines[0]
    assert not (tmp_path / "o").exists()


def test_bridges_and_save_bridges_together_are_one_line(synth_world: Path, tmp_path: Path) -> None:
    result = _invoke("vlm", "--ckpt", tmp_path, "--data", synth_world, "--out", tmp_path / "o",
                     "--bridges", tmp_path, "--save-bridges", tmp_path)
    assert result.exit_code == 2 and "--bridges and --save-bridges contradict" in result.stderr


def test_all_runs_vlm_only_when_asked(
    synth_world: Path, micro_run: Path, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    common = ("--ckpt", micro_run, "--data", synth_world, "--device", "cpu", "--protocol", "linear")
    result = _invoke("all", *common, "--out", tmp_path / "a", "--vlm", "--llm", tiny_llm_dir,
                     "--vlm-max-steps", "1", "--vlm-max-questions", "12")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "report.json").read_text())["protocols"] == ["linear", "vlm"]


def test_unloadable_llm_is_one_line(synth_world: Path, micro_run: Path, tmp_path: Path) -> None:
    result = _invoke("vlm", "--ckpt", micro_run, "--data", synth_world, "--out", tmp_path / "e",
                     "--device", "cpu", "--llm", tmp_path / "no-such-model")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --llm ") and "cannot load" in lines[0]


def test_vqav2_and_pope_train_one_bridge_per_encoder(
    micro_run: Path, tiny_llm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both tasks train on VQAv2's train2014 questions under the same settings: one bridge per
    encoder (checkpoint and random baseline), and the same numbers as training it per task."""
    import levl_eval.protocols.vlm.protocol as vlm_protocol

    root = write_pope_layout(write_vqav2_layout(tmp_path / "datasets", train=4, test=2))
    fits = []
    fit = vlm_protocol.fit_bridge
    monkeypatch.setattr(vlm_protocol, "fit_bridge", lambda *a, **k: fits.append(1) or fit(*a, **k))

    def results(out: Path) -> list[dict]:
        result = _invoke("vlm", "--ckpt", micro_run, "--datasets", root, "--out", out, "--device",
                         "cpu", "--llm", tiny_llm_dir, "--vlm-max-steps", "3", "--no-cache")
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        assert report["protocols"] == ["vlm:vqav2", "vlm:pope"]
        return [enc["protocols"] for enc in report["encoders"]]

    shared = results(tmp_path / "shared")
    assert len(fits) == 2  # one bridge per encoder, not one per task
    monkeypatch.setattr(vlm_protocol.TrainedBridges, "find", lambda *a: None)  # as before: per task
    separate = results(tmp_path / "separate")
    assert len(fits) == 2 + 4
    for together, alone in zip(shared, separate, strict=True):
        assert together["vlm:pope"]["data"]["train"].pop("bridge_trained_for") == "vqav2"
        assert together == alone  # bitwise: every score, loss, size and gain
