"""report.md carries the headline table; outputs are published atomically and re-rendered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from levl_eval.errors import EvalError, OutputError
from levl_eval.report import (
    REPORT_JSON,
    REPORT_MD,
    build_report,
    format_headline,
    publish_report,
    read_report,
    render_markdown,
    rerender_markdown,
)


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


def test_markdown_has_the_headline_table() -> None:
    markdown = render_markdown(_report())
    assert "| encoder | kind | zero-shot top-1 | zero-shot top-5 | zero-shot mean recall | linear top-1 |" in markdown
    assert "| run/step_0000100 | checkpoint | 62.50 | 100.00 | 62.50 | 87.50 |" in markdown
    assert "| random (seed 0) | random | 12.50 |" in markdown
    assert "recipe `micro_synthetic`" in markdown
    assert "| run/step_0000100 | 50.00 | 50.00 | 50.00 | 62.50 |" in markdown  # readout table
    assert "| random (seed 0) | — | — | — | — |" in markdown


def test_headline_text_lists_every_encoder_and_only_protocols_run() -> None:
    report = _report()
    report["protocols"] = ["linear"]
    text = format_headline(report)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["encoder", "kind", "linear", "top-1"]
    assert "zero-shot" not in text
    assert "87.50" in lines[1] and lines[2].startswith("random (seed 0)")


def test_publish_writes_strict_json_and_replaces_an_old_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish_report(out, _report())
    (out / "stale.txt").write_text("from the previous run")
    publish_report(out, _report())
    assert sorted(p.name for p in out.iterdir()) == ["plots", REPORT_JSON, REPORT_MD]
    data = json.loads((out / REPORT_JSON).read_text(), parse_constant=pytest.fail)
    assert data["encoders"][1]["protocols"]["linear"]["top1"] is None  # NaN -> null
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left behind


def test_publish_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        publish_report(tmp_path, _report())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_rerender_rebuilds_markdown_from_json(tmp_path: Path) -> None:
    publish_report(tmp_path / "out", _report())
    (tmp_path / "out" / REPORT_MD).write_text("old layout")
    rerender_markdown(tmp_path / "out")
    assert "## Headline" in (tmp_path / "out" / REPORT_MD).read_text()


def test_read_report_refuses_other_json(tmp_path: Path) -> None:
    (tmp_path / REPORT_JSON).write_text('{"schema": "something/else"}')
    with pytest.raises(EvalError, match="is not 'levl.eval-report/v1'"):
        read_report(tmp_path)
