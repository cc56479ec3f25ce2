"""report.json (everything, machine-readable) and report.md (the headline table for people).

report.md and the figures under plots/ (levl_eval.plots) are always rendered from report.json,
so `levl-eval report DIR` can re-render them after the layout changes without re-running any
evaluation. Both are written atomically, complete in a temp directory before they replace
levl's earlier outputs; nothing else in the output directory is touched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path

import jsonschema

from levl_eval.columns import UNITS, Column
from levl_eval.errors import EvalError, OutputError
from levl_eval.figure import tasks_of
from levl_eval.paper import PAPER_MODELS, paper_reference
from levl_eval.plots import PLOTS_DIR, plot_lines, write_plots
from levl_eval.protocols.registry import ENTRIES
from levl_eval.protocols.zeroshot.protocol import READOUT_DESCRIPTIONS, READOUT_LABELS
from levl_model.jsontext import parse_json

REPORT_SCHEMA = "levl.eval-report/v1"
REPORT_JSON, REPORT_MD = "report.json", "report.md"
REPORT_SCHEMA_FILE = "eval-report-v1.schema.json"
PAPER_KEY = "paper_reference"  # report.json: the paper's numbers (levl_eval.paper), never levl's
PAPER_COLUMN = f"paper (ViT-B/16, DataComp-L): {' / '.join(PAPER_MODELS)}"

def format_value(value: float | None, unit: str = "%") -> str:
    """A stored metric as the tables show it ("—" when the protocol did not produce it, or
    produced NaN, which report.json stores as null)."""
    if value is None or not math.isfinite(value):
        return "—"
    shown = UNITS[unit]
    return f"{shown.scale * value:.{shown.digits}f}"


def present_columns(report: dict, task: str) -> list[tuple[str, str, Column]]:
    """The task's headline columns plus its optional columns that hold a value."""
    protocol, _, dataset = task.partition(":")
    suffix = f" ({dataset})" if dataset else ""
    entry = ENTRIES.get(protocol)
    declared = entry.optional_columns if entry else ()
    optional = [(column.label(suffix), task, column) for column in declared
                if any(metric_at(enc, task, column.path) is not None for enc in report["encoders"])]
    return task_columns(task) + optional


def plot_columns(report: dict) -> Callable[[str], list[tuple[str, tuple[str, ...], str]]]:
    """(title, path, unit) of each task's bar-chart columns: the headline table's."""
    return lambda task: [(title, column.path, column.unit)
                         for title, _, column in present_columns(report, task)]


def task_columns(task: str) -> list[tuple[str, str, Column]]:
    """(title, task key, column) of one task's headline columns (its own, else its protocol's)."""
    protocol, _, dataset = task.partition(":")
    suffix = f" ({dataset})" if dataset else ""
    entry = ENTRIES.get(protocol)
    if entry is None:
        return []
    columns = entry.task_columns.get(dataset, entry.columns) if dataset else entry.columns
    return [(column.label(suffix), task, column) for column in columns]


def build_report(*, encoders: list[dict], data: dict, protocols: list[str], device: str,
                 producer: dict, suite: dict | None = None, datasets_root: str | None = None,
                 tasks: dict | None = None, skipped: list[dict] | None = None) -> dict:
    """The report.json document: one entry per encoder (checkpoints first, then baselines).

    `suite` is the resolved evaluation suite (levl_eval.suites), the one record of how the run
    was configured (absent when the runner was called without one); `datasets_root` is the
    --datasets directory, the one input the suite does not hold (None: none given).
    `protocols` lists the task keys run (a protocol name, or `protocol:dataset` on real data),
    `tasks` describes each task's data, `skipped` says which tasks did not run and why;
    `paper_reference` holds the paper's numbers for the tasks it reports (levl_eval.paper).
    """
    return {
        "schema": REPORT_SCHEMA,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "producer": producer,
        "device": device,
        **({} if suite is None else {"suite": dict(suite)}),
        "datasets_root": datasets_root,
        "protocols": list(protocols),
        "data": data,
        "tasks": dict(tasks or {}),
        "skipped": list(skipped or []),
        "encoders": encoders,
        PAPER_KEY: paper_reference(protocols, encoders, tasks or {}),
    }


def metric_at(encoder: dict, protocol: str, path: tuple[str, ...]) -> float | None:
    """A metric of one encoder, or None when that protocol did not run."""
    value = encoder.get("protocols", {}).get(protocol)
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def percent(value: float | None) -> str:
    return format_value(value, "%")


def headline_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """The headline table laid out like the paper's: one row per metric of each task run, one
    column per encoder, so checkpoints and their random baselines read side by side however
    many datasets ran (a row per encoder would grow a column per metric instead)."""
    encoders = report["encoders"]
    header = ["metric", *(enc["name"] for enc in encoders)]
    rows = [[title, *(format_value(metric_at(enc, task, column.path), column.unit) for enc in encoders)]
            for title, task, column in headline_columns(report)]
    return header, rows


def headline_columns(report: dict) -> list[tuple[str, str, Column]]:
    """(title, task key, column) of every headline row, in task order."""
    return [c for task in report.get("protocols", []) for c in present_columns(report, task)]


def report_paper_reference(report: dict) -> dict:
    """The paper's numbers a report carries; one written before they were recorded gets them
    from its task keys, so `levl-eval report DIR` adds the column on re-rendering."""
    if PAPER_KEY in report:
        return report[PAPER_KEY] or {}
    return paper_reference(report.get("protocols", []), report["encoders"], report.get("tasks", {}))


def paper_cell(reference: dict, task: str, column: Column) -> str:
    """`65.42 / 65.75 / 66.34`: the paper's numbers for one headline row, shown in the row's
    unit; `not comparable: <why>` where the paper has a number but this run's protocol was
    another (the number is withheld, as in report.json); empty (not zero, not a dash) where the
    paper has no number for it."""
    metric = ".".join(column.path)
    withheld = reference.get("not_comparable", {}).get(task)
    if withheld and metric in withheld["metrics"]:
        return f"not comparable: {withheld['reason']}"
    values = reference.get("tasks", {}).get(task, {}).get(metric)
    if not values:
        return ""
    return " / ".join(format_value(values[model], column.unit) for model in PAPER_MODELS)


def headline_markdown(report: dict) -> list[str]:
    """report.md's headline table, with the paper's numbers as a last, labelled column when a
    task run is one the paper reports (the terminal's table stays levl's numbers only)."""
    header, rows = headline_table(report)
    reference = report_paper_reference(report)
    cells = [paper_cell(reference, task, column) for _, task, column in headline_columns(report)]
    if not any(cells):
        return markdown_table(header, rows)
    note = (f"The last column holds the paper's numbers, not levl's ({reference['source']}): "
            "a reference, not a result of this run.")
    if reference.get("not_comparable"):
        note += (" Where it says *not comparable*, this run's protocol differs from the paper's "
                 "for that task, so the paper's number is left out.")
    table = markdown_table([*header, PAPER_COLUMN],
                           [[*row, cell] for row, cell in zip(rows, cells, strict=True)])
    return [*table, "", note]


def format_headline(report: dict) -> str:
    """The headline table as aligned plain text (what the CLI prints)."""
    header, rows = headline_table(report)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# Protocols whose entry asks for a per-readout table (zero-shot, retrieval), in protocol order.
READOUT_TABLES = {name: entry.readout_table for name, entry in ENTRIES.items() if entry.readout_table}
HEADLINE_MARK = "★"


def prompt_set_label(name: str, scored: dict, headline: str | None) -> str:
    """`openai80 (80) ★`: the set's name, its template count, the headline's mark."""
    mark = f" {HEADLINE_MARK}" if name == headline else ""
    return f"{name} ({scored.get('num_prompts', '?')}){mark}"


def readout_rows(result: dict) -> list[tuple[str, dict]]:
    """(prompt set, readouts) of one task result: a row per zero-shot prompt set, the headline
    set marked; a single unlabelled row for a result without prompt sets (retrieval, a report
    written before zero-shot scored several)."""
    sets = result.get("prompt_sets")
    if not sets:
        return [("", result.get("readouts", {}))]
    return [(prompt_set_label(name, scored, result.get("prompt_set")), scored.get("readouts", {}))
            for name, scored in sets.items()]


def class_names_line(report: dict, task: str) -> list[str]:
    """Which class names a zero-shot task filled its templates with (curated or the dataset's)."""
    result = next((e["protocols"][task] for e in report["encoders"] if task in e.get("protocols", {})), {})
    data = result.get("data", {})
    if "class_names" not in data:
        return []
    return [f"{HEADLINE_MARK} = the headline prompt set (the dataset's own templates). Class names: "
            f"{data['class_names']} — {data.get('class_names_source')}.", ""]


def readout_table(report: dict, task: str) -> list[str]:
    """One metric of every readout of one task (zero-shot, retrieval), to see which pairing
    carries the alignment (a LeVLJEPA encoder aligns through its predictors, a contrastive one
    directly), with zero-shot's prompt sets side by side."""
    protocol, _, dataset = task.partition(":")
    title, key, label = READOUT_TABLES[protocol]
    results = [(enc["name"], enc.get("protocols", {}).get(task, {})) for enc in report["encoders"]]
    with_sets = any("prompt_sets" in result for _, result in results)
    header = ["encoder", *(["prompts"] if with_sets else []),
              *(f"{READOUT_LABELS[r]} {label}" for r in READOUT_DESCRIPTIONS)]
    rows = [[name, *([prompts or "—"] if with_sets else []),
             *(percent(readouts.get(r, {}).get(key)) for r in READOUT_DESCRIPTIONS)]
            for name, result in results for prompts, readouts in readout_rows(result)]
    heading = f"## {title}{f' ({dataset})' if dataset else ''}"
    return [heading, "", *class_names_line(report, task), *markdown_table(header, rows), ""]


def skipped_lines(report: dict) -> list[str]:
    """Tasks that did not run (absent dataset, world without the needed members)."""
    skipped = report.get("skipped", [])
    if not skipped:
        return []
    return ["## Skipped", "", *(f"- {item['task']}: {item['reason']}" for item in skipped), ""]


def source_lines(report: dict) -> list[str]:
    """Where a merged report's encoders came from (`levl-eval report A B`), and any warning."""
    sources = report.get("sources", [])
    if not sources:
        return []
    lines = ["## Sources", "", *(f"- `{s['tag']}`: `{s['dir']}` (created {s.get('created_at')}): "
                                 + ", ".join(s["encoders"]) for s in sources)]
    return [*lines, *(f"- **warning**: {w}" for w in report.get("warnings", [])), ""]


def encoder_lines(report: dict) -> list[str]:
    lines = ["## Encoders", ""]
    for enc in report["encoders"]:
        facts = {k: enc.get(k) for k in ("path", "step", "samples_seen", "recipe", "objective",
                                          "seed", "baseline_for", "source") if enc.get(k) is not None}
        shown = {k: ", ".join(v) if isinstance(v, list) else v for k, v in facts.items()}
        lines.append(f"- **{enc['name']}** ({enc['kind']}): "
                     + ", ".join(f"{k} `{v}`" for k, v in shown.items()))
    return [*lines, ""]


def settings_lines(report: dict) -> list[str]:
    """Each protocol's settings and dataset sizes, taken from the first encoder that ran it."""
    lines = ["## Protocol settings", ""]
    for protocol in report.get("protocols", []):
        result = next((e["protocols"][protocol] for e in report["encoders"]
                       if protocol in e.get("protocols", {})), None)
        if result is None:
            continue
        shown = {"settings": result["settings"], "data": result["data"]}
        if "probes" in result:  # each probe's own settings (linear: mlp, attentive)
            shown["probe_settings"] = {name: probe["settings"] for name, probe in result["probes"].items()}
        lines += [f"### {protocol}", "", "```json", json.dumps(shown, indent=2), "```", ""]
    return lines


def data_sentence(report: dict) -> str:
    """Which data the report ran on: the synthetic world's test split, or, in a run without
    one (`--datasets` only), the real datasets' root."""
    data = report.get("data") or {}
    if not data.get("root"):
        # reports written before `datasets_root` kept it in the runner's options
        root = report.get("datasets_root") or (report.get("options") or {}).get("datasets")
        return f"Data: no synthetic world{f'; real datasets under `{root}`' if root else ''}."
    test = data.get("test", {})
    return (f"Data: `{data.get('root')}` — test split `{test.get('dataset', test.get('name'))}` "
            f"({test.get('num_samples', '?')} samples, {len(data.get('classes', []))} classes).")


def render_markdown(report: dict) -> str:
    """report.md: headline table first, then per-readout numbers, encoders, settings."""
    lines = [
        "# levl-eval report", "",
        f"{data_sentence(report)} Device: {report.get('device')}. Created {report.get('created_at')}. "
        "Numbers are percentages unless the metric names a unit in brackets.", "",
        "## Headline", "",
        *headline_markdown(report), "",
    ]
    for protocol in READOUT_TABLES:
        for task in tasks_of(report, protocol):
            lines += readout_table(report, task)
    lines += plot_lines(report, plot_columns(report))
    return "\n".join(lines + skipped_lines(report) + source_lines(report) + encoder_lines(report)
                     + settings_lines(report))


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + fsync + rename: never a half file.

    The temp file is created with open(..., "x") rather than mkstemp so it gets the user's
    umask (mkstemp's 0600 would make shared result directories unreadable to the group).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sibling_dir(out_dir: Path, tag: str) -> Path:
    """A fresh hidden directory beside out_dir (umask permissions, unlike mkdtemp's 0700)."""
    path = out_dir.with_name(f".{out_dir.name}.{tag}-{uuid.uuid4().hex[:12]}")
    path.mkdir()
    return path


def json_safe(value: object) -> object:
    """NaN/inf (e.g. a metric of an empty class set) become null: report.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_report_files(out_dir: Path, report: dict) -> None:
    text = json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n"
    atomic_write_text(out_dir / REPORT_JSON, text)
    write_plots(out_dir, report, plot_columns(report))
    atomic_write_text(out_dir / REPORT_MD, render_markdown(report))


def check_output_dir(out_dir: Path) -> None:
    """Refuse, before any work, an --out that is a file, a non-empty directory without a
    report, or one whose report.json is not levl's: only levl's own outputs are ever replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: exists and is not a directory; choose another --out")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / REPORT_JSON).is_file():
        raise OutputError(
            f"--out {out_dir}: directory is not empty and holds no {REPORT_JSON}; "
            "choose an empty or new directory (levl-eval only replaces its own outputs)"
        )
    try:
        read_report(out_dir)
    except EvalError as exc:
        raise OutputError(f"--out {out_dir}: its {REPORT_JSON} is not a levl-eval report "
                          f"({exc}); choose another --out") from None


def publish_report(out_dir: Path, report: dict) -> Path:
    """Write the report into a temp directory beside out_dir, then move it into place.

    Into an existing report directory only levl's own outputs (report.json, report.md, plots/)
    are swapped, one rename each; every other file there is the user's and stays.
    """
    out_dir = out_dir.absolute()
    check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = sibling_dir(out_dir, "tmp")
    try:
        write_report_files(tmp_dir, report)
        if out_dir.exists():
            replace_outputs(tmp_dir, out_dir)
        else:
            tmp_dir.rename(out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir


def replace_outputs(new_dir: Path, out_dir: Path) -> None:
    """Swap each of levl's outputs from new_dir into out_dir, report.json last (a reader never
    sees a new report.json beside old figures); the old ones are deleted only after the swap."""
    old_dir = sibling_dir(out_dir, "old")
    try:
        for name in (PLOTS_DIR, REPORT_MD, REPORT_JSON):
            if (out_dir / name).exists():
                (out_dir / name).rename(old_dir / name)
            (new_dir / name).rename(out_dir / name)
    finally:
        shutil.rmtree(old_dir, ignore_errors=True)


def read_report(out_dir: Path) -> dict:
    """report.json of an output directory, refusing other files with a one-line error."""
    path = Path(out_dir) / REPORT_JSON
    if not path.is_file():
        raise EvalError(f"{path}: not found; pass a directory written by `levl-eval all`")
    try:
        report = parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path}: not valid JSON ({exc}); re-run `levl-eval all`") from exc
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else None
        raise EvalError(f"{path}: schema {found!r} is not {REPORT_SCHEMA!r}; re-run `levl-eval all`")
    check_report(report, path)
    return report


@cache
def report_schema() -> dict:
    """The JSON Schema of report.json shipped in the package (immutable package data)."""
    return json.loads((files("levl_eval") / "schemas" / REPORT_SCHEMA_FILE).read_text())


def check_report(report: dict, path: Path) -> None:
    """Refuse a report.json missing a key that report.md, the plots or a merge look up (a
    hand-edited file, one of an older layout), naming it, before anything is rendered or written."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(report_schema()).iter_errors(report))
    if error is not None:
        location = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise EvalError(f"{path}: invalid report at {location}: {error.message}; re-run "
                        "`levl-eval all` or restore the file")


def rerender_markdown(out_dir: Path) -> Path:
    """Re-render report.md and its plots from report.json (after a layout change; no
    re-evaluation)."""
    report = read_report(out_dir)
    path = Path(out_dir) / REPORT_MD
    write_plots(Path(out_dir), report, plot_columns(report))
    atomic_write_text(path, render_markdown(report))
    return path
