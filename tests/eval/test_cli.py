"""levl-eval end to end on a micro checkpoint, and its one-line errors (exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_asserts import one_error_line
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.datasets.fixtures import write_pets_layout
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS
from levl_eval.tasks import NO_SYNTH
from levl_eval.testing.dense import write_cocostuff_layout
from levl_eval.testing.worlds import (
    karpathy_coco_document,
    save_micro_checkpoint,
    write_ade20k_layout,
    write_image,
    write_in9_layout,
    write_karpathy_json,
)

runner = CliRunner()


def _invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_all_reports_the_checkpoint_and_its_random_baseline(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", out,
                     "--device", "cpu", "--batch-size", "10")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    checkpoint, baseline = report["encoders"]
    assert (checkpoint["kind"], baseline["kind"]) == ("checkpoint", "random")
    assert (checkpoint["random_init"], baseline["random_init"]) == (False, True)
    assert (baseline["step"], baseline["samples_seen"]) == (0, 0)
    assert checkpoint["name"] == "micro-run/step_0000007"
    assert (checkpoint["step"], checkpoint["samples_seen"], checkpoint["recipe"]) == (7, 56, "eval_test_micro")
    assert checkpoint["path"].endswith("checkpoints/step_0000007")
    assert baseline["baseline_for"] == [checkpoint["name"]]
    for encoder in (checkpoint, baseline):
        zeroshot, linear = encoder["protocols"]["zeroshot"], encoder["protocols"]["linear"]
        assert set(zeroshot["readouts"]) == {"zv_zt", "predv_zt", "zv_predt", "average"}
        assert zeroshot["top1"] == zeroshot["readouts"]["average"]["top1"]
        assert zeroshot["data"]["test"]["samples"] == 24 and zeroshot["data"]["num_prompts"] == 2
        assert linear["data"]["train"]["samples"] == 24 and linear["settings"]["epochs"] == 50
        # colour-coded classes: even frozen random features separate them linearly
        assert linear["top1"] >= 0.9
    markdown = (out / "report.md").read_text()
    assert "| metric | micro-run/step_0000007 | random (seed 0) |" in markdown  # side by side
    assert f"| linear top-1 | {100 * checkpoint['protocols']['linear']['top1']:.2f} | " in markdown
    assert "- **random (seed 0)** (random)" in markdown
    assert "zero-shot top-1" in result.stdout and "wrote" in result.stdout

    rerender = _invoke("report", out)
    assert rerender.exit_code == 0 and "micro-run/step_0000007" in rerender.stdout


def test_single_protocol_command_runs_only_that_protocol(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    ckpt = micro_run / "checkpoints" / "step_0000007"
    result = _invoke("zeroshot", "--ckpt", ckpt, "--data", eval_world, "--out", tmp_path / "zs",
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "zs" / "report.json").read_text())
    assert report["protocols"] == ["zeroshot"]
    assert all(set(e["protocols"]) == {"zeroshot"} for e in report["encoders"])
    assert "linear top-1" not in result.stdout


def test_missing_data_dir_is_one_line(micro_run: Path, tmp_path: Path) -> None:
    result = _invoke("all", "--ckpt", micro_run, "--data", tmp_path / "nope", "--out", tmp_path / "o")
    _assert_one_line_error(result, "--data", "nope")
    assert not (tmp_path / "o").exists()


def test_data_dir_without_eval_splits_is_one_line(micro_run: Path, tmp_path: Path) -> None:
    result = _invoke("all", "--ckpt", micro_run, "--data", tmp_path, "--out", tmp_path / "o")
    _assert_one_line_error(result, "eval-train/manifest.json")


def test_bad_checkpoint_path_is_one_line(eval_world: Path, tmp_path: Path) -> None:
    result = _invoke("all", "--ckpt", tmp_path / "missing", "--data", eval_world,
                     "--out", tmp_path / "o", "--device", "cpu")
    _assert_one_line_error(result, "missing")
    assert not (tmp_path / "o").exists()


def test_checkpoint_of_another_schema_is_one_line(eval_world: Path, micro_run: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "old-ckpt"
    shutil.copytree(micro_run / "checkpoints" / "step_0000007", ckpt)
    metadata = json.loads((ckpt / "metadata.json").read_text())
    (ckpt / "metadata.json").write_text(json.dumps({**metadata, "schema": "levl.checkpoint/v0"}))
    result = _invoke("zeroshot", "--ckpt", ckpt, "--data", eval_world, "--out", tmp_path / "o",
                     "--device", "cpu")
    _assert_one_line_error(result, "metadata.json", "unknown schema 'levl.checkpoint/v0'",
                           "levl.checkpoint/v1")
    assert not (tmp_path / "o").exists()


def test_cuda_without_cuda_is_one_line(
    eval_world: Path, micro_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "o",
                     "--device", "cuda")
    _assert_one_line_error(result, "--device cuda", "CUDA is not available", "--device cpu")


def test_unknown_protocol_is_one_line(eval_world: Path, micro_run: Path, tmp_path: Path) -> None:
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "o",
                     "--protocol", "knn")
    _assert_one_line_error(result, "unknown protocol 'knn'")


def test_report_of_a_directory_without_report_json_is_one_line(tmp_path: Path) -> None:
    _assert_one_line_error(_invoke("report", tmp_path), "report.json")


def test_debug_reraises(tmp_path: Path) -> None:
    result = _invoke("report", tmp_path, "--debug")
    assert result.exit_code == 1 and result.exception is not None


def test_all_runs_the_dense_robustness_and_retrieval_protocols(
    synth_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = _invoke("all", "--ckpt", micro_run, "--data", synth_world, "--out", out,
                     "--device", "cpu", "--batch-size", "16", "--datasets", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["zeroshot", "linear", "segmentation", "background", "retrieval"]
    skipped = {item["task"]: item["reason"] for item in report["skipped"]}
    assert skipped["segmentation:ade20k"] == f"not found at {tmp_path / 'ADEChallengeData2016'}"
    classification = {f"{protocol}:{name}" for protocol in ("zeroshot", "linear") for name in CLASSIFICATION}
    assert set(skipped) == {"segmentation:ade20k", "segmentation:cocostuff", "depth", "depth:nyu",
                            "background:in9", "retrieval:coco", "retrieval:flickr30k"} | classification
    assert "the synthetic world has no depth maps" in skipped["depth"]
    skipped_lines = [line for line in result.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped_lines) == 1 and skipped_lines[0].startswith(f"skipped {len(skipped)} task(s)")
    assert f"segmentation:ade20k: not found at {tmp_path}" in skipped_lines[0]
    assert result.stdout.splitlines()[0] == skipped_lines[0]  # said first, before the figures
    for encoder in report["encoders"]:
        seg, bg, ret = (encoder["protocols"][p] for p in ("segmentation", "background", "retrieval"))
        assert 0.0 <= seg["miou"] <= 1.0 and seg["classes_present"] >= 2
        assert seg["data"]["test"]["samples"] == 32 and seg["data"]["test"]["label_size"] == [32, 32]
        assert seg["data"]["num_classes"] == 9  # background + 8 shapes
        assert bg["data"]["mixed_rand"]["samples"] == 32
        assert bg["drop_mixed_rand"] == bg["original_top1"] - bg["mixed_rand_top1"]
        assert ret["data"]["images"] == 32 and ret["data"]["captions"] == 32
        assert 0.0 <= ret["i2t_r1"] <= ret["i2t_r5"] <= ret["i2t_r10"] <= 1.0
    assert report["tasks"]["segmentation"]["dataset"] == "synth"
    markdown = (out / "report.md").read_text()
    assert "seg mIoU" in markdown and "bg drop rand" in markdown and "i2t R@1" in markdown
    assert "## Skipped" in markdown


def test_a_world_without_masks_or_variants_skips_those_protocols(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "o",
                     "--device", "cpu", "--protocol", "segmentation", "--protocol", "background")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["protocols"] == []
    reasons = {item["task"]: item["reason"] for item in report["skipped"]}
    assert "mask.png" in reasons["segmentation"] and "mixed_same.jpg" in reasons["background"]
    assert reasons["segmentation:ade20k"] == "no --datasets root given"


def test_missing_datasets_root_is_one_line(eval_world: Path, micro_run: Path, tmp_path: Path) -> None:
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "o",
                     "--device", "cpu", "--data-root", tmp_path / "nowhere")
    _assert_one_line_error(result, "--data-root", "nowhere", "no such directory")


def test_real_layouts_under_datasets_are_evaluated(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    root = tmp_path / "datasets"
    write_ade20k_layout(root)
    write_cocostuff_layout(root)
    write_in9_layout(root)
    write_karpathy_json(root, karpathy_coco_document(root))
    write_image(root / "flickr30k" / "flickr30k-images" / "1.jpg")
    write_karpathy_json(root, {"images": [{"filename": "1.jpg", "split": "test", "sentences": [{"raw": "a dog"}]}]},
                        "flickr30k", "dataset_flickr30k.json")
    result = _invoke("all", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "o",
                     "--device", "cpu", "--datasets", root, "--protocol", "segmentation",
                     "--protocol", "background", "--protocol", "retrieval")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["protocols"] == ["segmentation:ade20k", "segmentation:cocostuff", "background:in9",
                                   "retrieval", "retrieval:coco", "retrieval:flickr30k"]
    assert report["tasks"]["background:in9"]["data"]["train_rule"].startswith("no original/train")
    checkpoint = report["encoders"][0]["protocols"]
    assert checkpoint["segmentation:ade20k"]["data"]["test"]["samples"] == 2
    assert checkpoint["segmentation:ade20k"]["classes_present"] == 2  # classes 0 and 1; void ignored
    assert checkpoint["background:in9"]["data"]["original"]["samples"] == 4
    assert checkpoint["retrieval:coco"]["data"] == {"dataset": "coco", "images": 2, "captions": 4, "skipped": {}}
    assert checkpoint["retrieval:flickr30k"]["i2t_r1"] == 1.0  # one image, one caption
    cocostuff = checkpoint["segmentation:cocostuff"]
    assert cocostuff["data"]["num_classes"] == 171 and cocostuff["classes_present"] == 3  # person, 2 stuff
    assert "seg mIoU (ade20k)" in result.stdout and "seg mIoU (cocostuff)" in result.stdout


def test_malformed_dataset_is_one_line_before_any_checkpoint_loads(
    eval_world: Path, tmp_path: Path
) -> None:
    write_karpathy_json(tmp_path, {"annotations": []})
    result = _invoke("retrieval", "--ckpt", tmp_path / "no-such-ckpt", "--data", eval_world,
                     "--out", tmp_path / "o", "--device", "cpu", "--datasets", tmp_path)
    _assert_one_line_error(result, "dataset_coco.json: no `images` list")


def test_several_checkpoints_are_reported_side_by_side_with_one_baseline_per_config(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    same_config = save_micro_checkpoint(tmp_path / "seed2", seed=2)
    other_config = save_micro_checkpoint(tmp_path / "px48", image_size=48)
    result = _invoke("zeroshot", "--ckpt", micro_run, "--ckpt", same_config, "--ckpt", other_config,
                     "--data", eval_world, "--out", tmp_path / "abc", "--device", "cpu")
    assert result.exit_code == 0, result.output
    encoders = json.loads((tmp_path / "abc" / "report.json").read_text())["encoders"]
    names = ["micro-run/step_0000007", "seed2", "px48", "random (seed 0, config of micro-run/step_0000007)",
             "random (seed 0, config of px48)"]
    assert [enc["name"] for enc in encoders] == names
    assert encoders[3]["baseline_for"] == names[:2] and encoders[4]["baseline_for"] == ["px48"]
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("metric  "))  # after `skipped`
    header, top1 = lines[first], lines[first + 1]
    assert [name for name in names if name in header] == names
    assert top1.split()[2:] == [f"{100 * enc['protocols']['zeroshot']['top1']:.2f}" for enc in encoders]


def test_skipped_tasks_are_said_before_any_checkpoint_is_loaded(
        synth_world: Path, micro_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The skipped line comes from the plan, before extraction: a load that fails still
    follows it (hours of extraction are not spent before the user learns what will not run)."""
    from levl_eval import runner as runner_module
    from levl_eval.errors import EvalError

    def refuse(*args, **kwargs):
        raise EvalError("stopped at the first checkpoint load")

    monkeypatch.setattr(runner_module, "load_frozen_checkpoint", refuse)
    result = _invoke("all", "--ckpt", micro_run, "--data", synth_world, "--out",
                     tmp_path / "eval", "--device", "cpu", "--datasets", tmp_path)
    assert result.exit_code == 2
    assert result.stdout.startswith("skipped ") and "segmentation:ade20k" in result.stdout
    assert "stopped at the first checkpoint load" in result.stderr


def test_all_with_only_datasets_runs_the_real_tasks_and_no_synthetic_one(
    run_main, micro_run: Path, tmp_path: Path
) -> None:
    """No --data: the tasks found under --datasets run, the synthetic world's are skipped, and
    report.md says so (and shows the paper's Pets numbers beside levl's)."""
    root = write_ade20k_layout(write_pets_layout(tmp_path / "datasets"))
    out = tmp_path / "o"
    result = run_main("levl-eval", "all", "--ckpt", micro_run, "--datasets", root, "--out", out,
                      "--device", "cpu", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    real = ["zeroshot:pets", "linear:pets", "segmentation:ade20k"]
    assert report["protocols"] == real and list(report["tasks"]) == real and report["data"] == {}
    assert all(set(encoder["protocols"]) == set(real) for encoder in report["encoders"])
    assert [enc["kind"] for enc in report["encoders"]] == ["checkpoint", "random"]
    skipped = {item["task"]: item["reason"] for item in report["skipped"]}
    synthetic = [name for name in PROTOCOLS if name not in OPT_IN]
    assert all(skipped[task] == NO_SYNTH for task in synthetic)
    assert result.stdout.startswith("skipped ") and f"{', '.join(synthetic)}: {NO_SYNTH}" in result.stdout
    markdown = (out / "report.md").read_text()
    assert f"Data: no synthetic world; real datasets under `{root}`." in markdown
    assert "| linear top-1 (pets) |" in markdown and "\n| linear top-1 |" not in markdown
    assert markdown.count(" | 81.28 / 82.86 / 82.64 |") == 1  # the paper's linear Pets top-1


def test_neither_data_nor_datasets_is_one_line_naming_both(run_main, micro_run: Path, tmp_path: Path) -> None:
    line = one_error_line(run_main("levl-eval", "all", "--ckpt", micro_run, "--out", tmp_path / "o",
                                   "--device", "cpu"))
    assert "--data SYNTH_DIR" in line and "--datasets ROOT" in line
    assert not (tmp_path / "o").exists()


def test_malformed_dataset_without_data_names_its_file_before_any_checkpoint_loads(
    run_main, tmp_path: Path
) -> None:
    write_pets_layout(tmp_path)
    (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").write_text("Bengal_1\n")
    line = one_error_line(run_main("levl-eval", "linear", "--ckpt", tmp_path / "no-such-ckpt",
                                   "--datasets", tmp_path, "--out", tmp_path / "o", "--device", "cpu"))
    assert "test.txt:1: expected" in line
