"""`levl-eval report A B ...`: saved reports side by side, without re-running anything.

Checkpoints are often evaluated on different days or machines (one `levl-eval all` per run);
comparing them like the paper's tables needs their report.json files in one table. The merged
document is an ordinary report (same schema), so it renders, plots and re-renders like one; its
`sources` list says which directory each encoder came from and the suite it ran under (each
source's own: the merged report has no single `suite`). Encoders named alike in several
sources (every run's `random (seed 0)`) get their directory's name appended, and the references
to them (`baseline_for`, `gain_over_random.baseline`) follow the rename.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from levl_eval.report import build_report


def source_tags(dirs: list[Path]) -> list[str]:
    """A short, distinct tag per source directory: its name, its path when names repeat, and a
    `#2`, `#3`... when the same directory is given twice."""
    names = [Path(d).name or str(d) for d in dirs]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    tags, seen = [], Counter()
    for directory, name in zip(dirs, names, strict=True):
        tag = str(directory) if name in repeated else name
        seen[tag] += 1
        tags.append(tag if seen[tag] == 1 else f"{tag} #{seen[tag]}")
    return tags


def clashing_names(reports: list[dict]) -> set[str]:
    """Encoder names that appear in more than one source report."""
    counts = Counter(name for report in reports
                     for name in {enc["name"] for enc in report["encoders"]})
    return {name for name, count in counts.items() if count > 1}


def renamed_encoders(report: dict, tag: str, clashing: set[str]) -> list[dict]:
    """The report's encoders, clashing names suffixed with `[tag]`, references renamed too."""
    rename = {enc["name"]: f"{enc['name']} [{tag}]" for enc in report["encoders"]
              if enc["name"] in clashing}
    encoders = []
    for enc in json.loads(json.dumps(report["encoders"])):  # a deep copy: sources stay intact
        enc["name"] = rename.get(enc["name"], enc["name"])
        if "baseline_for" in enc:
            enc["baseline_for"] = [rename.get(name, name) for name in enc["baseline_for"]]
        for result in enc.get("protocols", {}).values():
            gain = result.get("gain_over_random") if isinstance(result, dict) else None
            if isinstance(gain, dict) and gain.get("baseline") in rename:
                gain["baseline"] = rename[gain["baseline"]]
        enc["source"] = tag
        encoders.append(enc)
    return encoders


def data_mismatches(tags: list[str], reports: list[dict]) -> list[str]:
    """One warning per task that ran on different data in two sources (numbers not comparable)."""
    warnings, first_seen = [], {}
    for tag, report in zip(tags, reports, strict=True):
        for task, described in report.get("tasks", {}).items():
            data = json.dumps(described.get("data"), sort_keys=True)
            if task not in first_seen:
                first_seen[task] = (tag, data)
            elif first_seen[task][1] != data:
                warnings.append(f"{task}: {first_seen[task][0]} and {tag} ran it on different data; "
                                "their numbers are not comparable")
    return warnings


def merge_reports(dirs: list[Path], reports: list[dict], producer: dict) -> dict:
    """One report whose encoders are every source's, tasks in order of first appearance."""
    tags, clashing = source_tags(dirs), clashing_names(reports)
    protocols = list(dict.fromkeys(task for report in reports for task in report.get("protocols", [])))
    tasks = {}
    for report in reports:
        tasks = {**report.get("tasks", {}), **tasks}  # the first source describing a task wins
    skipped = {item["task"]: item for report in reports for item in report.get("skipped", [])
               if item["task"] not in protocols}
    merged = build_report(
        encoders=[enc for tag, report in zip(tags, reports, strict=True)
                  for enc in renamed_encoders(report, tag, clashing)],
        data=reports[0].get("data", {}), protocols=protocols,
        device=", ".join(dict.fromkeys(str(report.get("device")) for report in reports)),
        producer=producer, tasks=tasks, skipped=list(skipped.values()),
    )
    merged["sources"] = [{"tag": tag, "dir": str(Path(d).absolute()), "created_at": r.get("created_at"),
                          "encoders": [enc["name"] for enc in renamed_encoders(r, tag, clashing)],
                          **({"suite": r["suite"]} if "suite" in r else {})}
                         for tag, d, r in zip(tags, dirs, reports, strict=True)]
    merged["warnings"] = data_mismatches(tags, reports)
    return merged
