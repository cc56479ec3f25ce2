"""levl-eval on the real-dataset layouts through `--data-root` (alias of --datasets): a micro
checkpoint and its random baseline on tiny ImageNet / Places365 / Aircraft / Pets / ImageFolder
trees (linear, zeroshot) and tiny GQA / VQAv2 / POPE trees (vlm, under a tiny Llama saved to
disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.datasets import prompts
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.datasets.fixtures import (
    write_aircraft_layout,
    write_gqa_layout,
    write_imagefolder_layout,
    write_imagenet_layout,
    write_pets_layout,
    write_places365_layout,
    write_pope_layout,
    write_vqav2_layout,
)
from levl_eval.geometry import CHECKPOINT, PAPER_PROBE
from levl_eval.protocols.registry import build_protocol
from levl_eval.protocols.vlm.items import PROMPT
from levl_eval.protocols.zeroshot.entry import ZeroshotSuite
from levl_eval.runner import EvalOptions
from levl_eval.testing.llm import tiny_llm

runner = CliRunner()
FIXTURE_WORDS = ("Is the object red? What color is the object? What color is it? red blue yes no "
                 "Is there a person giraffe chair fork in the image?")


def _invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def classification_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_imagenet_layout(root, train=4, val=2)
    write_places365_layout(root)
    write_aircraft_layout(root)
    write_pets_layout(root, trainval=3, test=2)
    write_imagefolder_layout(root)
    return root


def test_linear_runs_on_every_classification_dataset_under_data_root(
    eval_world: Path, micro_run: Path, classification_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = _invoke("linear", "--ckpt", micro_run, "--data", eval_world, "--out", out,
                     "--device", "cpu", "--data-root", classification_root)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["linear", *(f"linear:{name}" for name in CLASSIFICATION)]
    assert report["skipped"] == []
    imagenet = report["tasks"]["linear:imagenet"]["data"]
    assert imagenet["classes"][:2] == ["tench", "goldfish"] and imagenet["train_rule"] == "train/ (every image)"
    assert report["datasets_root"] == str(classification_root)
    assert report["suite"]["linear"]["train_per_class_cap"] is None and "options" not in report
    for encoder in report["encoders"]:
        linear = encoder["protocols"]["linear:imagenet"]
        assert linear["data"]["train"]["samples"] == 16 and linear["data"]["test"]["samples"] == 8
        assert linear["data"]["num_classes"] == 4 and 0.0 <= linear["top1"] <= 1.0
        assert encoder["protocols"]["linear:pets"]["data"]["test"]["samples"] == 6
        # real datasets: the paper's probe geometry; the synthetic world: the checkpoint's own
        for name in CLASSIFICATION:
            settings = encoder["protocols"][f"linear:{name}"]["settings"]
            assert settings["geometry"] == PAPER_PROBE.describe() and settings["train_per_class_cap"] is None
        assert encoder["protocols"]["linear"]["settings"]["geometry"] == CHECKPOINT.describe()
        assert encoder["preprocess"]["size"] == 32  # each encoder's own mean/std are on record
    assert '"center_crop": 224' in (out / "report.md").read_text()
    # class-coloured images: even frozen random features separate them linearly
    assert report["encoders"][1]["protocols"]["linear:pets"]["top1"] >= 0.8


def test_zeroshot_scores_every_dataset_with_each_prompt_set_side_by_side(
    eval_world: Path, micro_run: Path, classification_root: Path, tmp_path: Path
) -> None:
    result = _invoke("zeroshot", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "z",
                     "--device", "cpu", "--datasets", classification_root)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "z" / "report.json").read_text())
    assert report["tasks"]["zeroshot:pets"]["data"]["prompts"] == list(prompts.PETS)
    for encoder in report["encoders"]:
        scores = encoder["protocols"]["zeroshot:imagenet"]
        assert scores["prompt_set"] == "openai80" and set(scores["prompt_sets"]) == {"single", "openai80"}
        assert scores["data"]["num_prompts"] == 80 and scores["data"]["num_classes"] == 4
        assert scores["data"]["class_names"] == "curated" and "CLIP" in scores["data"]["class_names_source"]
        pets = encoder["protocols"]["zeroshot:pets"]
        assert pets["prompt_set"] == "dataset" and set(pets["prompt_sets"]) == {"single", "openai80", "dataset"}
        assert pets["data"]["class_names"] == "dataset"
    markdown = (tmp_path / "z" / "report.md").read_text()
    for task in ("zeroshot", *(f"zeroshot:{name}" for name in CLASSIFICATION)):
        dataset = task.partition(":")[2]
        assert f"## Zero-shot readouts{f' ({dataset})' if dataset else ''}\n" in markdown
    assert markdown.count("| openai80 (80) ★ |") == 2  # imagenet: checkpoint and random rows
    assert report["suite"]["zeroshot"]["class_names"] == "curated"


def test_class_names_option_reaches_zero_shot_and_a_wrong_one_is_one_line(
    eval_world: Path, tmp_path: Path
) -> None:
    assert EvalOptions(sections={"zeroshot": ZeroshotSuite(class_names="dataset")}).protocol_options("zeroshot") == {"class_names": "dataset"}
    assert build_protocol("zeroshot", **EvalOptions().protocol_options("zeroshot")).class_names == "curated"
    result = _invoke("all", "--ckpt", tmp_path / "no-such-ckpt", "--data", eval_world,
                     "--out", tmp_path / "o", "--device", "cpu", "--class-names", "wordnet")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == ("error: --class-names 'wordnet': unknown; use one of "
                                     "curated, dataset")


def test_malformed_classification_layout_is_one_line_before_any_checkpoint_loads(
    eval_world: Path, tmp_path: Path
) -> None:
    write_pets_layout(tmp_path)
    (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").write_text("Bengal_1\n")
    result = _invoke("linear", "--ckpt", tmp_path / "no-such-ckpt", "--data", eval_world,
                     "--out", tmp_path / "o", "--device", "cpu", "--data-root", tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "test.txt:1: expected" in lines[0]
    assert not (tmp_path / "o").exists()


def _without_variants(root: Path) -> str:
    (write_aircraft_layout(root) / "fgvc-aircraft-2013b" / "data" / "variants.txt").unlink()
    return "fgvc-aircraft-2013b/data/variants.txt: missing; the official variant list"


def _imagenet_without_wnids(root: Path) -> str:
    write_imagenet_layout(root)
    for split in ("train", "val"):
        (root / "imagenet" / split / "n01440764").rename(root / "imagenet" / split / "fish")
    return "imagenet/train/fish: not an ImageNet-1k wnid; add"


@pytest.mark.parametrize("break_layout", [_without_variants, _imagenet_without_wnids])
def test_missing_class_names_file_is_one_line_naming_it(
    eval_world: Path, tmp_path: Path, break_layout
) -> None:
    expected = break_layout(tmp_path)
    result = _invoke("zeroshot", "--ckpt", tmp_path / "no-such-ckpt", "--data", eval_world,
                     "--out", tmp_path / "o", "--device", "cpu", "--data-root", tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_vlm_scores_gqa_by_exact_match_and_pope_per_split(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    root = tmp_path / "datasets"
    write_gqa_layout(root, train=4, test=2)
    write_vqav2_layout(root, train=3, test=2)
    write_pope_layout(root, images=4)
    llm = tiny_llm([PROMPT, FIXTURE_WORDS])
    llm_dir = tmp_path / "tiny-llama"
    llm.model.save_pretrained(llm_dir)
    llm.tokenizer.save_pretrained(llm_dir)
    result = _invoke("vlm", "--ckpt", micro_run, "--data", eval_world, "--out", tmp_path / "v",
                     "--device", "cpu", "--data-root", root, "--llm", llm_dir, "--vlm-max-steps", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert report["protocols"] == ["vlm:gqa", "vlm:vqav2", "vlm:pope"]
    skipped = {item["task"]: item["reason"] for item in report["skipped"]}
    assert "labels.answers" in skipped["vlm"]
    for encoder in report["encoders"]:
        gqa, pope = encoder["protocols"]["vlm:gqa"], encoder["protocols"]["vlm:pope"]
        assert set(gqa["by_type"]) == {"verify", "query"} and 0 <= gqa["exact_match"] <= 1
        assert gqa["data"]["test"] == {"split": "gqa/testdev_balanced", "images": 2, "questions": 4,
                                       "by_type": {"verify": 2, "query": 2}, "skipped": {}}
        assert set(pope["pope"]) == {"random", "popular", "adversarial"} and "vqa_accuracy" not in pope
        assert pope["pope"]["random"]["num_questions"] == 8
        # one epoch of 8 (GQA) and 3 (POPE's bridge: VQAv2's train questions) in batches of 16
        assert gqa["train_steps"] == 1 and pope["train_steps"] == 1
        assert pope["data"]["train"]["split"] == "vqav2/train2014"  # never POPE's own questions
        assert pope["data"]["train"]["by_type"] == {"other": 3} and pope["data"]["test"]["images"] == 4
        assert pope["settings"]["train_images"] == 20_000 and pope["settings"]["epochs"] == 1
        vqav2 = encoder["protocols"]["vlm:vqav2"]
        assert vqav2["data"]["test"]["questions"] == 2 and 0 <= vqav2["vqa_accuracy"] <= 1
        assert vqav2["vqa_accuracy"] <= vqav2["vqa_accuracy_simple"]
    checkpoint, baseline = report["encoders"]
    for task, metric in (("vlm:gqa", "exact_match"), ("vlm:vqav2", "vqa_accuracy"), ("vlm:pope", "pope_f1")):
        gain = checkpoint["protocols"][task]["gain_over_random"][metric]
        assert gain == pytest.approx(checkpoint["protocols"][task][metric] - baseline["protocols"][task][metric])
    markdown = (tmp_path / "v" / "report.md").read_text()
    for row in ("| exact match (gqa) |", "| exact match gain vs random (gqa) |", "| VQA acc (vqav2) |",
                "| VQA acc min(1,n/3) (vqav2) |", "| POPE F1 gain vs random (pope) |"):
        assert row in markdown
    assert report["tasks"]["vlm:pope"]["data"]["train_rule"].startswith("VQAv2 train2014: every image (3)")
