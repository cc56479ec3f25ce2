"""report.md carries the headline table (encoders side by side, units where a number is not a
percentage); outputs are published atomically, re-rendered, and several saved reports merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.compare import source_tags
from levl_eval.errors import EvalError, OutputError
from levl_eval.paper import PAPER_PERCENT, paper_reference
from levl_eval.plots import write_plots
from levl_eval.protocols.registry import PROTOCOLS, REAL_DATASETS
from levl_eval.report import (
    PAPER_COLUMN,
    PAPER_KEY,
    REPORT_JSON,
    REPORT_MD,
    build_report,
    format_headline,
    format_value,
    headline_table,
    plot_columns,
    publish_report,
    read_report,
    render_markdown,
    rerender_markdown,
    task_columns,
)
from levl_eval.suites import resolve_suite


def _result(top1: float) -> dict:
    return {"top1": top1, "top5": 1.0, "mean_per_class_recall": top1}


def _report() -> dict:
    checkpoint = {
        "name": "run/step_0000100", "kind": "checkpoint", "path": "/runs/run/checkpoints/step_0000100",
        "step": 100, "samples_seen": 800, "recipe": "micro_synthetic",
        "protocols": {
            "zeroshot": {**_result(0.625), "settings": {"k": 1}, "data": {"test": 8},
                         "readouts": {r: _result(0.5) for r in ("zv_zt", "predv_zt", "zv_predt")}
                         | {"average": _result(0.625)}},
            "linear": {**_result(0.875), "settings": {"lr": 0.1}, "data": {"train": 8}},
        },
    }
    random = {"name": "random (seed 0)", "kind": "random", "seed": 0, "baseline_for": ["run/step_0000100"],
              "protocols": {"zeroshot": {**_result(0.125), "settings": {}, "data": {}},
                            "linear": {**_result(float("nan")), "settings": {}, "data": {}}}}
    return build_report(encoders=[checkpoint, random], data={"root": "/w", "classes": ["a", "b"]},
                        protocols=["zeroshot", "linear"], device="cpu", producer={"package": "levl-eval"})


def test_markdown_has_the_headline_table_with_encoders_side_by_side() -> None:
    markdown = render_markdown(_report())
    assert "| metric | run/step_0000100 | random (seed 0) |" in markdown
    assert "| zero-shot top-1 | 62.50 | 12.50 |" in markdown
    assert "| zero-shot top-5 | 100.00 | 100.00 |" in markdown
    assert "| linear top-1 | 87.50 | — |" in markdown  # NaN: no number
    assert "recipe `micro_synthetic`" in markdown
    assert "| run/step_0000100 | 50.00 | 50.00 | 50.00 | 62.50 |" in markdown  # readout table
    assert "| random (seed 0) | — | — | — | — |" in markdown


def test_headline_text_lists_every_encoder_and_only_protocols_run() -> None:
    report = _report()
    report["protocols"] = ["linear"]
    text = format_headline(report)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "run/step_0000100", "random", "(seed", "0)"]
    assert "zero-shot" not in text
    assert lines[1].split() == ["linear", "top-1", "87.50", "—"] and len(lines) == 4


def test_publish_writes_strict_json_and_replaces_only_its_own_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish_report(out, _report())
    (out / "notes.txt").write_text("the user's")
    (out / "mine").mkdir()
    (out / "mine" / "data.bin").write_bytes(b"keep")
    (out / REPORT_MD).write_text("old")
    publish_report(out, _report())
    assert sorted(p.name for p in out.iterdir()) == ["mine", "notes.txt", "plots", REPORT_JSON,
                                                     REPORT_MD]
    assert (out / "notes.txt").read_text() == "the user's"
    assert (out / "mine" / "data.bin").read_bytes() == b"keep"
    assert "## Headline" in (out / REPORT_MD).read_text()
    data = json.loads((out / REPORT_JSON).read_text(), parse_constant=pytest.fail)
    assert data["encoders"][1]["protocols"]["linear"]["top1"] is None  # NaN -> null
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left behind


def test_publish_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        publish_report(tmp_path, _report())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("content", ['{"schema": "someone.else/v3"}', "not json", "[1, 2]"])
def test_publish_refuses_a_directory_whose_report_json_is_not_levls(tmp_path: Path,
                                                                    content: str) -> None:
    (tmp_path / REPORT_JSON).write_text(content)
    (tmp_path / "results.csv").write_text("1,2")
    with pytest.raises(OutputError, match="is not a levl-eval report"):
        publish_report(tmp_path, _report())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "results.csv"]
    assert (tmp_path / REPORT_JSON).read_text() == content


def test_rerender_rebuilds_markdown_from_json(tmp_path: Path) -> None:
    publish_report(tmp_path / "out", _report())
    (tmp_path / "out" / REPORT_MD).write_text("old layout")
    rerender_markdown(tmp_path / "out")
    assert "## Headline" in (tmp_path / "out" / REPORT_MD).read_text()


def test_read_report_refuses_other_json(tmp_path: Path) -> None:
    (tmp_path / REPORT_JSON).write_text('{"schema": "something/else"}')
    with pytest.raises(EvalError, match="is not 'levl.eval-report/v1'"):
        read_report(tmp_path)


def _zeroshot_result(sets: dict[str, tuple[int, float]], headline: str, names: str) -> dict:
    """A zero-shot result with every readout of each prompt set at one top-1 (set -> (P, top1))."""
    scored = {name: {"num_prompts": count, "readouts": {r: _result(top1) for r in
                                                         ("zv_zt", "predv_zt", "zv_predt", "average")}}
              for name, (count, top1) in sets.items()}
    return {**scored[headline]["readouts"]["average"], "readout": "average", "prompt_set": headline,
            "readouts": scored[headline]["readouts"], "prompt_sets": scored, "settings": {},
            "data": {"class_names": names, "class_names_source": f"{names} names"}}


def _prompt_sets_report() -> dict:
    results = {
        "zeroshot": _zeroshot_result({"single": (1, 0.25), "openai80": (80, 0.375),
                                      "dataset": (5, 0.5)}, "dataset", "dataset"),
        "zeroshot:imagenet": _zeroshot_result({"single": (1, 0.125), "openai80": (80, 0.625)},
                                              "openai80", "curated"),
    }
    checkpoint = {"name": "run", "kind": "checkpoint", "protocols": results}
    return build_report(encoders=[checkpoint], data={}, protocols=list(results), device="cpu",
                        producer={})


def test_markdown_shows_every_zero_shot_dataset_s_readouts_per_prompt_set(tmp_path: Path) -> None:
    publish_report(tmp_path / "out", _prompt_sets_report())
    markdown = (tmp_path / "out" / REPORT_MD).read_text()
    synthetic = markdown.split("## Zero-shot readouts\n")[1].split("##")[0]
    imagenet = markdown.split("## Zero-shot readouts (imagenet)\n")[1].split("##")[0]
    header = "| encoder | prompts | z_v·z_t top-1 | pred_v·z_t top-1 | z_v·pred_t top-1 | average top-1 |"
    assert header in synthetic and header in imagenet
    assert "| run | single (1) | 25.00 | 25.00 | 25.00 | 25.00 |" in synthetic
    assert "| run | openai80 (80) | 37.50 | 37.50 | 37.50 | 37.50 |" in synthetic
    assert "| run | dataset (5) ★ | 50.00 | 50.00 | 50.00 | 50.00 |" in synthetic
    assert "| run | single (1) | 12.50 | 12.50 | 12.50 | 12.50 |" in imagenet
    assert "| run | openai80 (80) ★ | 62.50 | 62.50 | 62.50 | 62.50 |" in imagenet
    assert "Class names: curated — curated names." in imagenet
    assert "| zero-shot top-1 (imagenet) | 62.50 |" in markdown  # the headline set's average
    assert read_report(tmp_path / "out")["encoders"][0]["protocols"]["zeroshot:imagenet"]["prompt_set"] == "openai80"


def test_a_prompt_set_without_readouts_is_an_invalid_report(tmp_path: Path) -> None:
    report = _prompt_sets_report()
    del report["encoders"][0]["protocols"]["zeroshot:imagenet"]["prompt_sets"]["single"]["readouts"]
    (tmp_path / REPORT_JSON).write_text(json.dumps(report))
    with pytest.raises(EvalError, match="prompt_sets/single: 'readouts' is a required property"):
        read_report(tmp_path)


def _depth_report(rmse: float, data_root: str = "/datasets") -> dict:
    result = {"rmse": rmse, "abs_rel": 0.1234, "delta1": 0.8765,
              "settings": {}, "data": {}}
    checkpoint = {"name": "run/step_0000100", "kind": "checkpoint",
                  "protocols": {"depth:nyu": result}}
    random = {"name": "random (seed 0)", "kind": "random", "baseline_for": ["run/step_0000100"],
              "protocols": {"depth:nyu": {**result, "rmse": 2 * rmse}}}
    return build_report(encoders=[checkpoint, random], data={}, protocols=["depth:nyu"], device="cpu",
                        producer={}, tasks={"depth:nyu": {"data": {"root": data_root}}})


def test_depth_is_shown_in_metres_and_as_a_ratio_with_units_in_the_titles() -> None:
    header, rows = headline_table(_depth_report(0.52749))
    assert header == ["metric", "run/step_0000100", "random (seed 0)"]
    assert rows == [["depth RMSE [m] (nyu)", "0.527", "1.055"],
                    ["depth AbsRel [ratio] (nyu)", "0.123", "0.123"],
                    ["depth δ<1.25 (nyu)", "87.65", "87.65"]]
    assert format_value(None, "m") == "—"


def test_bar_chart_gets_one_panel_per_unit(tmp_path: Path) -> None:
    plots = write_plots(tmp_path, _depth_report(0.5), plot_columns(_depth_report(0.5)))
    assert [plot.filename for plot in plots] == ["bars-depth-nyu.png"]
    figure = Figure()
    plots[0].draw(figure)
    assert [axes.get_ylabel() for axes in figure.axes] == ["metres", "ratio", "percent"]
    assert figure.axes[0].patches[1].get_height() == pytest.approx(1.0)  # the baseline's RMSE, m


def _saved(tmp_path: Path, name: str, report: dict) -> Path:
    publish_report(tmp_path / name, report)
    return tmp_path / name


def test_report_of_two_saved_dirs_puts_them_side_by_side(tmp_path: Path) -> None:
    first = _saved(tmp_path, "eval-a", _depth_report(0.5))
    second = _saved(tmp_path, "eval-b", _depth_report(0.25))
    result = CliRunner().invoke(app, ["report", str(first), str(second), "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "ab" / REPORT_JSON).read_text())
    names = [enc["name"] for enc in merged["encoders"]]
    assert names == ["run/step_0000100 [eval-a]", "random (seed 0) [eval-a]",
                     "run/step_0000100 [eval-b]", "random (seed 0) [eval-b]"]
    assert merged["encoders"][3]["baseline_for"] == ["run/step_0000100 [eval-b]"]
    assert [s["tag"] for s in merged["sources"]] == ["eval-a", "eval-b"] and merged["warnings"] == []
    assert result.stdout.splitlines()[1].split()[-4:] == ["0.500", "1.000", "0.250", "0.500"]
    markdown = (tmp_path / "ab" / REPORT_MD).read_text()
    assert "| depth RMSE [m] (nyu) | 0.500 | 1.000 | 0.250 | 0.500 |" in markdown
    assert "## Sources" in markdown and (tmp_path / "ab" / "plots" / "bars-depth-nyu.png").is_file()
    assert json.loads((first / REPORT_JSON).read_text())["encoders"][0]["name"] == "run/step_0000100"


def test_reports_on_different_data_are_compared_with_a_warning(tmp_path: Path) -> None:
    first = _saved(tmp_path, "a", _depth_report(0.5))
    second = _saved(tmp_path, "b", _depth_report(0.5, data_root="/elsewhere"))
    result = CliRunner().invoke(app, ["report", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert "warning: depth:nyu: a and b ran it on different data" in result.stdout
    assert "pass --out DIR" in result.stdout and not (tmp_path / "a" / "plots" / "x").exists()


def test_source_tags_stay_distinct_when_names_or_dirs_repeat() -> None:
    dirs = [Path("/runs/a/eval"), Path("/runs/b/eval"), Path("/runs/a/eval"), Path("/runs/c/final")]
    assert source_tags(dirs) == ["/runs/a/eval", "/runs/b/eval", "/runs/a/eval #2", "final"]


def _paper_task_report() -> dict:
    """A checkpoint on the synthetic world, on ImageNet and IN-9 (the paper reports both) and on
    an ImageFolder (it does not)."""
    background = {"original_top1": 0.9, "drop_mixed_same": 0.04, "drop_mixed_rand": 0.125,
                  "settings": {}, "data": {}}
    checkpoint = {"name": "run/step_0000100", "kind": "checkpoint", "protocols": {
        "linear": {**_result(0.875), "settings": {}, "data": {}},
        "linear:imagenet": {**_result(0.5), "settings": {}, "data": {}},
        "linear:imagefolder": {**_result(0.4), "settings": {}, "data": {}},
        "background:in9": background}}
    return build_report(encoders=[checkpoint], data={"root": "/w"}, device="cpu", producer={},
                        protocols=["linear", "linear:imagenet", "linear:imagefolder", "background:in9"])


def test_the_paper_s_numbers_sit_beside_the_matching_rows_in_levl_s_units(tmp_path: Path) -> None:
    report = _paper_task_report()
    assert report[PAPER_KEY]["tasks"] == {
        "linear:imagenet": {"top1": {"LeVLJEPA": 0.6542, "InfoNCE": 0.6575, "SigLIP": 0.6634}},
        "background:in9": {"drop_mixed_same": {"LeVLJEPA": 0.0595, "InfoNCE": 0.0657, "SigLIP": 0.0703},
                           "drop_mixed_rand": {"LeVLJEPA": 0.1721, "InfoNCE": 0.1867, "SigLIP": 0.1809}}}
    publish_report(tmp_path / "eval", report)
    assert read_report(tmp_path / "eval")[PAPER_KEY] == report[PAPER_KEY]  # the schema takes it
    markdown = (tmp_path / "eval" / REPORT_MD).read_text()
    assert f"| metric | run/step_0000100 | {PAPER_COLUMN} |" in markdown
    assert "| linear top-1 (imagenet) | 50.00 | 65.42 / 65.75 / 66.34 |" in markdown
    assert "| bg drop same (in9) | 4.00 | 5.95 / 6.57 / 7.03 |" in markdown  # percentage points
    assert "| bg drop rand (in9) | 12.50 | 17.21 / 18.67 / 18.09 |" in markdown
    # no paper number: an empty cell, never a zero or a dash
    assert "| linear top-5 (imagenet) | 100.00 |  |" in markdown
    assert "| linear top-1 (imagefolder) | 40.00 |  |" in markdown
    assert "| linear top-1 | 87.50 |  |" in markdown  # the synthetic world
    assert "arXiv 2607.00784" in markdown
    assert PAPER_COLUMN not in format_headline(report)  # the terminal shows levl's numbers only
    del report[PAPER_KEY]  # a report.json written before the column: re-rendering adds it
    assert "| linear top-1 (imagenet) | 50.00 | 65.42 / 65.75 / 66.34 |" in render_markdown(report)


def test_a_report_of_tasks_the_paper_does_not_report_has_no_paper_column() -> None:
    report = _report()
    assert report[PAPER_KEY] == {}
    assert PAPER_COLUMN not in render_markdown(report)


def test_every_paper_number_names_a_real_dataset_s_headline_metric_and_never_the_synthetic_world() -> None:
    for task, metric in PAPER_PERCENT:
        protocol, _, dataset = task.partition(":")
        assert dataset in REAL_DATASETS[protocol], task
        assert [column.unit for _, _, column in task_columns(task) if column.path == (metric,)] == ["%"]
    assert paper_reference(PROTOCOLS) == {}  # synthetic-world task keys are bare protocol names


def test_the_suite_is_the_one_record_of_the_configuration(tmp_path: Path) -> None:
    """report.json keeps the resolved suite, not the runner's options beside it; the --datasets
    root, which the suite does not hold, has its own key and reaches report.md."""
    suite = json.loads(json.dumps(resolve_suite("quick").to_dict()))  # as report.json holds it
    report = {**_depth_report(0.5), "suite": suite, "datasets_root": "/datasets"}
    assert "options" not in _depth_report(0.5) and _depth_report(0.5)["datasets_root"] is None
    publish_report(tmp_path / "eval", report)
    assert read_report(tmp_path / "eval")["suite"] == suite  # the schema takes it
    assert "Data: no synthetic world; real datasets under `/datasets`." in render_markdown(report)
    old = {key: value for key, value in report.items() if key not in ("suite", "datasets_root")}
    old["options"] = {"datasets": "/old"}  # a report.json written before: re-rendered as it was
    assert "real datasets under `/old`." in render_markdown(old)


def _capped_report(class_names: str = "curated") -> dict:
    """ImageNet's linear probe trained on a per-class-capped train set, and zero-shot."""
    def linear(cap: int | None, before: int, after: int) -> dict:
        train = {"samples": after, **({"files_before_cap": before, "files_after_cap": after} if cap else {})}
        return {**_result(0.5), "settings": {"train_per_class_cap": cap}, "data": {"train": train}}

    zeroshot = {**_result(0.25), "settings": {"class_names": class_names},
                "data": {"class_names": "dataset" if class_names == "dataset" else "curated"}}
    encoders = [{"name": name, "kind": kind, "protocols": {
        "linear:imagenet": linear(500, 1_281_167, 500_000), "linear:pets": linear(500, 3680, 3680),
        "linear:places365": linear(None, 10, 10), "zeroshot:imagenet": zeroshot}}
        for name, kind in (("run/step_0000100", "checkpoint"), ("random (seed 0)", "random"))]
    tasks = {"zeroshot:imagenet": {"data": {"curated_classes": ["tench"]}}}
    return build_report(encoders=encoders, data={}, device="cpu", producer={}, tasks=tasks,
                        protocols=["linear:imagenet", "linear:pets", "linear:places365", "zeroshot:imagenet"])


def test_paper_numbers_are_withheld_where_the_run_s_protocol_is_not_the_paper_s(tmp_path: Path) -> None:
    """A per-class cap that left train images out: the paper's probe number is not shown as
    comparable, in report.json and report.md alike, saying why; a cap that cut nothing and an
    uncapped task keep theirs."""
    report = _capped_report()
    reference = report[PAPER_KEY]
    reason = ("train set capped at 500 images/class (500000 of 1281167 images; the paper's probe "
              "trains on the whole split)")
    assert reference["not_comparable"] == {"linear:imagenet": {"reason": reason, "metrics": ["top1"]}}
    assert set(reference["tasks"]) == {"linear:pets", "linear:places365", "zeroshot:imagenet"}
    publish_report(tmp_path / "eval", report)
    assert read_report(tmp_path / "eval")[PAPER_KEY] == reference  # the schema takes it
    markdown = (tmp_path / "eval" / REPORT_MD).read_text()
    assert f"| linear top-1 (imagenet) | 50.00 | 50.00 | not comparable: {reason} |" in markdown
    assert "65.42" not in markdown and "this run's protocol differs from the paper's" in markdown
    assert "| linear top-1 (pets) | 50.00 | 50.00 | 81.28 / 82.86 / 82.64 |" in markdown
    assert "| linear top-5 (imagenet) | 100.00 | 100.00 |  |" in markdown  # no paper number anyway
    del report[PAPER_KEY]  # a report.json written before: re-rendering judges it the same way
    assert f"not comparable: {reason}" in render_markdown(report)


def test_zero_shot_with_the_dataset_s_own_class_names_is_not_the_paper_s_protocol() -> None:
    reference = _capped_report(class_names="dataset")[PAPER_KEY]
    assert reference["not_comparable"]["zeroshot:imagenet"]["reason"].startswith(
        "prompts filled with the dataset's own class names")
    assert "zeroshot:imagenet" not in reference["tasks"]
