"""Named evaluation suites (levl_eval.suites): each resolves and validates, `--set` overrides a
field and lands in report.json, a bad key or value is one `error:` line, and a shorthand option
gives the same config as the equivalent `--set`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cli_asserts import one_error_line

from levl_eval.errors import EvalError
from levl_eval.probes import PROBE_NAMES
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS
from levl_eval.report import report_schema
from levl_eval.suites import SUITES, eval_options, resolve_suite


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_resolves_checks_and_gives_runner_options(name: str, tmp_path: Path) -> None:
    suite = resolve_suite(name)
    assert suite.name == name and suite.protocols
    options = eval_options(resolve_suite(name, overrides=["device=cpu",
                                                          f"cache_dir={tmp_path / 'c'}"]))
    assert options.protocols == suite.protocols and options.device == "cpu"
    recorded = json.loads(json.dumps(suite.to_dict()))  # as report.json holds it
    jsonschema.validate(recorded, report_schema()["properties"]["suite"])


def test_synthetic_is_todays_default_and_paper_is_the_whole_battery() -> None:
    synthetic, paper = resolve_suite("synthetic"), resolve_suite("paper")
    assert synthetic.protocols == tuple(p for p in PROTOCOLS if p not in OPT_IN)
    assert paper.protocols == tuple(PROTOCOLS) and "vlm" in paper.protocols
    assert paper.linear.train_per_class_cap is None and paper.linear.probes == ("linear",)
    assert paper.zeroshot.class_names == "curated"
    quick = resolve_suite("quick")
    assert set(quick.protocols) < set(synthetic.protocols)


def test_set_overrides_fields_and_parses_their_types() -> None:
    suite = resolve_suite("quick", overrides=["linear.train_per_class_cap=4", "cache=false",
                                              "linear.probes=all", "vlm.max_steps=none"])
    assert suite.linear.train_per_class_cap == 4 and suite.cache is False
    assert suite.linear.probes == PROBE_NAMES


def test_shorthand_and_equivalent_set_resolve_to_the_same_config(run_main) -> None:
    by_options = resolve_suite("synthetic", {"linear.probes": ("mlp",), "batch_size": 32,
                                             "zeroshot.class_names": "dataset"}, add=("vlm",))
    by_set = resolve_suite("synthetic", overrides=[
        "linear.probes=mlp", "batch_size=32", "zeroshot.class_names=dataset",
        "protocols=" + ",".join((*resolve_suite("synthetic").protocols, "vlm"))])
    assert by_options == by_set


@pytest.mark.parametrize(("args", "fragment"), [
    (["--set", "nosuch=1"], "unknown key 'nosuch'"),
    (["--set", "linear.nosuch=1"], "unknown key 'nosuch'"),
    (["--set", "batch_size=many"], "batch_size=many: expected int"),
    (["--set", "batch_size=0"], "batch_size=0"),
    (["--set", "linear.probes=ridge"], "unknown probe"),
    (["--set", "zeroshot.class_names=fancy"], "fancy"),
    (["--set", "protocols=nope"], "unknown protocol 'nope'"),
    (["--set", "batch_size"], "expected key=value"),
    (["--suite", "huge"], "unknown suite"),
])
def test_bad_suite_or_set_is_one_error_line(run_main, tmp_path: Path, args, fragment) -> None:
    result = run_main("levl-eval", "all", "--ckpt", tmp_path / "none", "--out", tmp_path / "out",
                      "--data", tmp_path / "none", *args)
    assert fragment in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_shorthand_and_set_clash_is_one_error_line() -> None:
    with pytest.raises(EvalError, match="--cache and --no-cache"):
        resolve_suite("synthetic", {"cache": False}, ["cache_dir=/tmp/x"])


def test_set_lands_in_report_json_with_the_whole_suite(
    run_main, eval_world: Path, micro_run: Path, tmp_path: Path,
) -> None:
    result = run_main("levl-eval", "all", "--ckpt", micro_run, "--data", eval_world,
                      "--out", tmp_path / "out", "--suite", "quick", "--device", "cpu",
                      "--no-cache", "--protocol", "zeroshot", "--set", "batch_size=7")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["suite"] == {**resolve_suite("quick").to_dict(), "protocols": ["zeroshot"],
                               "device": "cpu", "cache": False, "batch_size": 7,
                               "linear": {"probes": ["linear"], "train_per_class_cap": 16}}
    assert report["protocols"] == ["zeroshot"]
    assert "options" not in report  # the suite is the one record of the configuration


def test_suites_lists_them_and_shows_paper(run_main) -> None:
    listed = run_main("levl-eval", "suites")
    assert listed.returncode == 0 and all(name in listed.stdout for name in SUITES)
    shown = run_main("levl-eval", "suites", "--show", "paper")
    assert shown.returncode == 0, shown.stderr
    paper = json.loads(shown.stdout)
    assert paper["name"] == "paper" and "vlm" in paper["protocols"]
    assert paper["linear"]["train_per_class_cap"] is None
    assert "unknown suite" in one_error_line(run_main("levl-eval", "suites", "--show", "nope"))
