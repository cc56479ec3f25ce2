"""Aggregate img2dataset's per-shard `*_stats.json` into the manifest's `stats` block.

img2dataset counts failures by their raw error message ("HTTP Error 404: Not Found", an OpenCV
assertion text, ...). The manifest keys failures by a stable reason name instead, so runs can be
compared and thresholds set; the raw messages are kept (capped) for debugging.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from levl_data.errors import DataError
from levl_data.jsontext import parse_json

_RAW_MESSAGES_KEPT = 20
_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"HTTP Error (\d{3})"), "http_{0}"),
    (re.compile(r"timed? ?out", re.I), "timeout"),
    (re.compile(r"CV_IO_MAX_IMAGE_PIXELS|image area too large"), "image_too_large"),
    (re.compile(r"image too small"), "image_too_small"),
    (re.compile(r"aspect ratio too large"), "aspect_ratio_too_large"),
    (re.compile(r"decoding error|imdecode|cannot identify image", re.I), "undecodable"),
    (re.compile(r"X-Robots-Tag"), "disallowed_by_robots"),
    (re.compile(r"urlopen error|Connection|Remote end closed|certificate", re.I), "connection"),
]


def failure_reason(message: str) -> str:
    """A stable reason name for one img2dataset error message."""
    for pattern, name in _RULES:
        match = pattern.search(message)
        if match:
            return name.format(*match.groups())
    return "other"


def read_shard_stats(path: Path) -> dict:
    """One `NNNNN_stats.json`; a half-written one is reported as unreadable (and redone)."""
    try:
        stats = parse_json(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"shard stats {path}: unreadable ({err})") from None
    if not all(key in stats for key in ("count", "successes", "status_dict")):
        raise DataError(f"shard stats {path}: not an img2dataset stats file")
    return stats


def aggregate(shard_stats: list[dict], prepared_attempted: int, dropped: dict) -> dict:
    """Manifest stats: attempted = written + sum(failures), failures by reason name."""
    failures: Counter[str] = Counter(dropped)
    messages: Counter[str] = Counter()
    written = 0
    for stats in shard_stats:
        written += stats["successes"]
        for message, count in stats["status_dict"].items():
            if message == "success":
                continue
            failures[failure_reason(message)] += count
            messages[" ".join(message.split())[:200]] += count
    attempted = written + sum(failures.values())
    if attempted != prepared_attempted:
        raise DataError(
            f"fetch stats: shards account for {attempted} samples but {prepared_attempted} were "
            "attempted (a shard is missing; rerun the same command to resume)"
        )
    return {
        "attempted": attempted,
        "written": written,
        "failures": dict(sorted(failures.items())),
        "success_rate": round(written / attempted, 6) if attempted else 0.0,
        "failure_messages": dict(messages.most_common(_RAW_MESSAGES_KEPT)),
    }
