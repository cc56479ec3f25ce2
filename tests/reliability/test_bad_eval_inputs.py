"""levl-eval on bad input files: a zero-shot template str.format cannot fill with a class name,
a class list that is not UTF-8, a report.json missing keys. Each is one `error:` line naming the
file, exit 2, and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_asserts import one_error_line
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.datasets.fixtures import write_imagefolder_layout
from levl_eval.testing.worlds import save_micro_checkpoint, write_ade20k_layout, write_eval_world


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(a labelled eval world, a micro checkpoint)."""
    root = tmp_path_factory.mktemp("eval")
    return write_eval_world(root / "world"), save_micro_checkpoint(root / "ckpt")


def _evaluate(run_main, protocol: str, inputs, out: Path, *extra: object):
    world, ckpt = inputs
    return run_main("levl-eval", protocol, "--ckpt", ckpt, "--data", world, "--out", out,
                    "--device", "cpu", *extra)


@pytest.mark.parametrize("template,problem", [
    ("a {} next to a {}.", "has 2 {} placeholders, not one"),
    ("a {name}.", "has a stray brace or a named field"),
    ("a {}}.", "has a stray brace or a named field"),
])
def test_a_prompts_txt_template_that_cannot_name_the_class_is_one_error_line(
        run_main, inputs, tmp_path, template, problem):
    datasets = write_imagefolder_layout(tmp_path / "datasets")
    prompts = datasets / "imagefolder" / "prompts.txt"
    prompts.write_text(f"a photo of a {{}}.\n\n{template}\n")
    out = tmp_path / "out"
    line = one_error_line(_evaluate(run_main, "zeroshot", inputs, out, "--datasets", datasets))
    assert f"{prompts}: template {template!r} {problem} (line 3)" in line, line
    assert not out.exists()


def test_a_manifest_prompt_with_two_placeholders_is_one_error_line(run_main, inputs, tmp_path):
    world = shutil.copytree(inputs[0], tmp_path / "world")
    manifest = world / "eval-test" / "manifest.json"
    document = json.loads(manifest.read_text())
    document["labels"]["prompts"].append("a {} on a {}.")
    manifest.write_text(json.dumps(document))
    out = tmp_path / "out"
    line = one_error_line(_evaluate(run_main, "zeroshot", (world, inputs[1]), out))
    assert f"{manifest}: labels.prompts[" in line and "has 2 {} placeholders" in line, line
    assert not out.exists()


def test_a_class_list_that_is_not_utf8_is_one_error_line(run_main, inputs, tmp_path):
    datasets = write_ade20k_layout(tmp_path / "datasets")
    info = datasets / "ADEChallengeData2016" / "objectInfo150.txt"
    info.write_bytes(b"Idx\tRatio\tTrain\tVal\tName\n1\t0.15\t1\t1\tw\xe4ll\n")
    out = tmp_path / "out"
    result = _evaluate(run_main, "segmentation", inputs, out, "--datasets", datasets)
    line = one_error_line(result)
    assert f"{info}: not UTF-8 text" in line, line
    assert not out.exists()


@pytest.fixture(scope="module")
def saved_report(inputs, tmp_path_factory) -> Path:
    """A real report.json (zero-shot on the micro checkpoint) and its rendering."""
    world, ckpt = inputs
    out = tmp_path_factory.mktemp("report") / "eval"
    result = CliRunner().invoke(app, ["zeroshot", "--ckpt", str(ckpt), "--data", str(world),
                                      "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


def test_a_saved_report_rerenders(run_main, saved_report, tmp_path):
    copy = shutil.copytree(saved_report, tmp_path / "eval")
    result = run_main("levl-eval", "report", copy)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", [
    ("encoders",),
    ("encoders", 0, "name"),
    ("encoders", 1, "protocols", "zeroshot", "settings"),
    ("skipped", 0, "reason"),
])
def test_a_report_missing_a_key_is_one_error_line(run_main, saved_report, tmp_path, path):
    copy = shutil.copytree(saved_report, tmp_path / "eval")
    document = json.loads((copy / "report.json").read_text())
    document["skipped"] = [{"task": "zeroshot:imagenet", "reason": "not found"}]
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    (copy / "report.json").write_text(json.dumps(document))
    rendered = (copy / "report.md").read_bytes()
    line = one_error_line(run_main("levl-eval", "report", copy))
    where = "/".join(map(str, path[:-1])) or "(top level)"
    assert f"{copy / 'report.json'}: invalid report at {where}: '{path[-1]}' is a required" in line
    assert (copy / "report.md").read_bytes() == rendered
