"""What the readers of the standard layouts share: strict file reading (one error naming the
file), the deterministic subsampling rules that keep huge splits affordable (`evenly_spaced`, and
`per_class_capped`, the probes' optional per-class cap), and the
images/ + annotations/ pairing of the segmentation trees (ADE20K, COCO-Stuff)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.datasets.headers import image_header
from levl_eval.errors import DatasetNotFound, EvalDataError, EvalError
from levl_model.jsontext import parse_json

T = TypeVar("T")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
LABEL_MODES = frozenset({"L", "P"})  # PIL modes of an 8-bit single-channel label map


def dataset_dir(datasets_root: Path, dirname: str) -> Path:
    """ROOT/dirname, or DatasetNotFound (the protocol is skipped and reported) when absent."""
    root = Path(datasets_root) / dirname
    if not root.is_dir():
        raise DatasetNotFound(root)
    return root


def evenly_spaced(items: Sequence[T], cap: int | None) -> list[T]:
    """At most `cap` items, spread evenly over the sequence (positions floor(i * n / cap)).

    Evenly spaced rather than the first `cap`: sorted file names often cluster by source or
    date, and a spread keeps the subset representative while staying reproducible."""
    if cap is None or len(items) <= cap:
        return list(items)
    return [items[(i * len(items)) // cap] for i in range(cap)]


def per_class_capped(split: EvalSplit, cap: int | None) -> EvalSplit:
    """At most `cap` samples of each label, evenly spaced over that label's samples in stored
    order (`evenly_spaced`), kept in stored order; the split unchanged when `cap` is None.

    Only a split of files can be capped before extraction (a shard manifest is read whole). The
    capped split has its own name, so an encoder never serves the whole split's features for it."""
    if cap is None:
        return split
    if not split.files:
        raise EvalError(f"split {split.name}: a per-class cap applies to a real dataset's list of "
                        "files, not to a shard manifest (the synthetic world); drop the cap")
    by_label: dict[int, list[int]] = {}
    for index, sample in enumerate(split.files):
        by_label.setdefault(sample.label, []).append(index)
    kept = sorted(index for indices in by_label.values() for index in evenly_spaced(indices, cap))
    return replace(split, name=f"{split.name}[<={cap}/class]",
                   files=tuple(split.files[index] for index in kept))


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise EvalDataError(f"{path}: missing; {what}")
    return path


def read_json(path: Path, what: str) -> object:
    """The parsed document, or one error naming the file (`what` says what it should be)."""
    try:
        return parse_json(require_file(path, what).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc}); expected {what}") from None


def read_jsonl(path: Path, what: str) -> list[dict]:
    """One JSON object per non-empty line; a bad line is an error naming the file and line."""
    rows = []
    for number, line in numbered_lines(path, what):
        try:
            row = parse_json(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path}:{number}: not a JSON object ({exc}); expected {what}") from None
        if not isinstance(row, dict):
            raise EvalDataError(f"{path}:{number}: not a JSON object; expected {what}")
        rows.append(row)
    return rows


def read_lines(path: Path, what: str) -> list[str]:
    """The file's stripped non-empty lines (UTF-8)."""
    return [line for _, line in numbered_lines(path, what)]


def numbered_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the file's non-empty lines (UTF-8), so an error about
    one line can name it; a file of another encoding is one error naming the file."""
    try:
        text = require_file(path, what).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not UTF-8 text; expected {what}") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()]


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


@dataclass(frozen=True)
class PairedLayout:
    """A segmentation tree `images/<split>/<stem>.<ext>` + `annotations/<split>/<stem>.png`.

    The trees of ADE20K and COCO-Stuff have the same shape but come from different archives, so
    each way a tree can be incomplete gets the dataset's own fix in the error line."""

    splits_hint: str  # images/<split>/ missing: which splits the dataset needs
    empty_hint: str  # images/<split>/ empty: what to re-extract ({split} is filled in)
    annotation_hint: str  # an image without its annotation: where annotations come from
    mode_hint: str = "not an 8-bit label map; replace the annotation"


def paired_samples(root: Path, split: str, layout: PairedLayout) -> tuple[FileSample, ...]:
    """Every image of images/<split>/ with its annotation, checked before any model runs."""
    image_dir, mask_dir = root / "images" / split, root / "annotations" / split
    if not image_dir.is_dir():
        raise EvalDataError(f"{image_dir}: missing; {layout.splits_hint}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise EvalDataError(f"{image_dir}: holds no images; {layout.empty_hint.format(split=split)}")
    return tuple(paired_sample(image, mask_dir, layout) for image in images)


def paired_sample(image: Path, mask_dir: Path, layout: PairedLayout) -> FileSample:
    """The image with `mask_dir/<stem>.png`, which must be an 8-bit map of the image's size
    (read from the file headers: a wrong annotation would otherwise surface hours later as a
    skipped sample or a shape error inside the head's training)."""
    mask = mask_dir / f"{image.stem}.png"
    if not mask.is_file():
        raise EvalDataError(f"{mask}: missing annotation for {image.name}; {layout.annotation_hint}")
    (image_wh, _), (mask_wh, mask_mode) = image_header(image), image_header(mask)
    if mask_mode not in LABEL_MODES:
        raise EvalDataError(f"{mask}: PIL mode {mask_mode}, {layout.mode_hint}")
    if image_wh != mask_wh:
        raise EvalDataError(f"{mask}: size {mask_wh} differs from its image's {image_wh}; "
                            "replace the annotation")
    return FileSample(image=image, mask=mask)
