"""What the readers of the classification and VQA layouts share: strict file reading (one error
naming the file) and the deterministic subsampling rule that keeps huge splits affordable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from levl_eval.errors import EvalDataError
from levl_eval.featureset import EvalSplit, FileSample

T = TypeVar("T")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def evenly_spaced(items: Sequence[T], cap: int | None) -> list[T]:
    """At most `cap` items, spread evenly over the sequence (positions floor(i * n / cap)).

    Evenly spaced rather than the first `cap`: sorted file names often cluster by source or
    date, and a spread keeps the subset representative while staying reproducible."""
    if cap is None or len(items) <= cap:
        return list(items)
    return [items[(i * len(items)) // cap] for i in range(cap)]


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise EvalDataError(f"{path}: missing; {what}")
    return path


def read_json(path: Path, what: str) -> object:
    """The parsed document, or one error naming the file (`what` says what it should be)."""
    try:
        return json.loads(require_file(path, what).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc}); expected {what}") from None


def read_jsonl(path: Path, what: str) -> list[dict]:
    """One JSON object per non-empty line; a bad line is an error naming the file and line."""
    rows = []
    for number, line in enumerate(read_lines(path, what), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path}:{number}: not a JSON object ({exc}); expected {what}") from None
        if not isinstance(row, dict):
            raise EvalDataError(f"{path}:{number}: not a JSON object; expected {what}")
        rows.append(row)
    return rows


def read_lines(path: Path, what: str) -> list[str]:
    """The file's stripped non-empty lines (UTF-8)."""
    try:
        text = require_file(path, what).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not UTF-8 text; expected {what}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_images_exist(paths: Sequence[Path], listed_in: Path) -> None:
    """Fail before any model runs when a listed image is missing (the first one is named)."""
    for path in paths:
        if not path.is_file():
            raise EvalDataError(f"{path}: missing (listed in {listed_in})")


def listed_split(name: str, images: Sequence[Path], labels: Sequence[int], listed_in: Path) -> EvalSplit:
    """A split of images named by a list file (Aircraft, Pets), each checked to exist."""
    check_images_exist(images, listed_in)
    return EvalSplit(name, files=tuple(FileSample(image=image, label=label)
                                       for image, label in zip(images, labels, strict=True)))
