"""COCO / Flickr30k captions in Karpathy's split JSON, for retrieval.

Expected trees under the --datasets root:

    coco/
        dataset_coco.json            {"images": [{"filepath": "val2014", "filename": "COCO_val2014_
                                     000000391895.jpg", "split": "test", "sentences": [{"raw":
                                     "A man ..."}, ...]}, ...]}
        val2014/COCO_val2014_000000391895.jpg ...     (<filepath>/<filename>)
    flickr30k/
        dataset_flickr30k.json       the same, entries without `filepath`
        flickr30k-images/1000092795.jpg ...

Retrieval runs on the `test` split (5000 images for COCO, 1000 for Flickr30k, 5 captions each)
using each sentence's `raw` text. The JSON and every test image's existence are checked before
any model runs; a malformed file is one error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.protocols.retrieval.data import RetrievalData
from levl_model.jsontext import parse_json

SPLIT = "test"


@dataclass(frozen=True)
class KarpathyLayout:
    dataset: str
    dirname: str
    json_name: str
    default_image_dir: str  # where images live when an entry has no `filepath`


COCO = KarpathyLayout("coco", "coco", "dataset_coco.json", "")
FLICKR30K = KarpathyLayout("flickr30k", "flickr30k", "dataset_flickr30k.json", "flickr30k-images")


def load_entries(path: Path) -> list:
    """The `images` list of a Karpathy JSON, or a one-line error naming the file."""
    try:
        document = parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc}); re-download the Karpathy split") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise EvalDataError(f"{path}: no `images` list; expected Karpathy's dataset_*.json")
    return document["images"]


def entry_sample(entry: object, index: int, root: Path, layout: KarpathyLayout, path: Path) -> FileSample | None:
    """The FileSample of one test entry (None for other splits); malformed entries are errors."""
    try:
        if entry["split"] != SPLIT:
            return None
        image = root / entry.get("filepath", layout.default_image_dir) / entry["filename"]
        captions = tuple(str(sentence["raw"]).strip() for sentence in entry["sentences"])
    except (KeyError, TypeError, AttributeError):
        raise EvalDataError(f"{path}: images[{index}] lacks split, filename or sentences[].raw") from None
    if not image.is_file():
        raise EvalDataError(f"{image}: missing (listed in {path.name} images[{index}])")
    return FileSample(image=image, captions=tuple(c for c in captions if c))


def read_karpathy(datasets_root: Path, layout: KarpathyLayout) -> RetrievalData:
    root = Path(datasets_root) / layout.dirname
    path = root / layout.json_name
    if not path.is_file():
        raise DatasetNotFound(path)
    entries = load_entries(path)
    samples = [entry_sample(e, i, root, layout, path) for i, e in enumerate(entries)]
    samples = [s for s in samples if s is not None]
    if not samples:
        raise EvalDataError(f"{path}: no image in the {SPLIT!r} split")
    return RetrievalData(layout.dataset, EvalSplit(f"{layout.dataset}/{SPLIT}", files=tuple(samples)),
                         root=root, notes={"split": SPLIT, "json": str(path)})


def read_coco(datasets_root: Path) -> RetrievalData:
    return read_karpathy(datasets_root, COCO)


def read_flickr30k(datasets_root: Path) -> RetrievalData:
    return read_karpathy(datasets_root, FLICKR30K)
