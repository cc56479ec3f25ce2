"""Turn metadata files into the exact rows img2dataset will fetch, counting every row dropped.

Selection happens here, not in img2dataset, so that the manifest's stats can account for every
metadata row: rows outside the uid subset are not part of the dataset; of the rows attempted
(the first `max_samples` selected ones), those without a URL, with an empty caption, or repeating
an earlier URL are dropped and counted as failures. The result is written once under the fetch's
work dir and reused on resume, so a resumed fetch sees byte-identical input and shard ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from levl_data.errors import DataError
from levl_data.fetch.metadata import MetadataFile
from levl_data.fetch.subset import in_subset, uid_pairs
from levl_data.jsontext import parse_json
from levl_data.manifest import atomic_write_bytes

PREPARED_NAME = "prepared.json"


@dataclass
class PreparedInput:
    """What was selected: per-file row counts sent to img2dataset and rows dropped before it."""

    identity: str
    files: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    metadata_rows: int = 0
    selected: int = 0
    attempted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def prepare_input(
    metadata: list[MetadataFile],
    read: Callable[[Path], pa.Table],
    subset: np.ndarray | None,
    max_samples: int | None,
    work_dir: Path,
    identity: str,
) -> PreparedInput:
    """Write `work_dir/input/NNNNN.parquet` (url, caption[, uid, face_bboxes]) unless done."""
    marker = work_dir / PREPARED_NAME
    if marker.is_file():
        done = PreparedInput(**parse_json(marker.read_text("utf-8")))
        if done.identity == identity:
            return done
    input_dir = work_dir / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    for stale in input_dir.glob("*.parquet"):
        stale.unlink()
    prepared, dropped, seen = PreparedInput(identity), Counter(), np.empty(0, np.uint64)
    for meta in metadata:
        if max_samples is not None and prepared.attempted >= max_samples:
            break
        table = _select(read(meta.path), meta.path, subset, prepared, max_samples)
        table, seen = _drop_bad_rows(table, seen, dropped)
        if table.num_rows:
            name = f"{len(prepared.files):05d}.parquet"
            pq.write_table(table, input_dir / name)
            prepared.files.append(name)
            prepared.rows.append(table.num_rows)
    prepared.dropped = dict(sorted(dropped.items()))
    if not prepared.files:
        raise DataError(
            f"metadata {metadata[0].path}: no row left to fetch ({prepared.metadata_rows} rows "
            f"read, {prepared.selected} selected, dropped {prepared.dropped}); check the subset"
        )
    atomic_write_bytes(marker, json.dumps(asdict(prepared), indent=2).encode("utf-8"))
    return prepared


def _select(
    table: pa.Table,
    path: Path,
    subset: np.ndarray | None,
    prepared: PreparedInput,
    max_samples: int | None,
) -> pa.Table:
    """Apply the uid subset, then cut at max_samples; counts go into `prepared`."""
    prepared.metadata_rows += table.num_rows
    if subset is not None:
        uids = table["uid"].to_pylist()
        table = table.filter(pa.array(in_subset(uid_pairs(uids, f"metadata {path}"), subset)))
    prepared.selected += table.num_rows
    if max_samples is not None:
        table = table.slice(0, max_samples - prepared.attempted)
    prepared.attempted += table.num_rows
    return table


def _drop_bad_rows(
    table: pa.Table, seen: np.ndarray, dropped: Counter
) -> tuple[pa.Table, np.ndarray]:
    """Drop missing URLs, empty captions, then URLs already seen (in this or earlier files)."""
    url = pc.fill_null(table["url"], "")
    caption = pc.utf8_trim_whitespace(pc.fill_null(table["caption"], ""))
    missing_url = pc.equal(pc.utf8_trim_whitespace(url), "").to_numpy(zero_copy_only=False)
    empty_caption = ~missing_url & pc.equal(caption, "").to_numpy(zero_copy_only=False)
    keep = ~missing_url & ~empty_caption
    kept_index = np.flatnonzero(keep)
    hashes = pd.util.hash_array(np.asarray(url.take(pa.array(kept_index)).to_pylist(), object))
    repeated = pd.Series(hashes).duplicated().to_numpy() | _in_sorted(hashes, seen)
    duplicate = np.zeros(len(keep), dtype=bool)
    duplicate[kept_index[repeated]] = True
    keep &= ~duplicate
    dropped.update(
        missing_url=int(missing_url.sum()),
        empty_caption=int(empty_caption.sum()),
        duplicate_url=int(duplicate.sum()),
    )
    for reason in [r for r, n in dropped.items() if n == 0]:
        del dropped[reason]
    return table.filter(pa.array(keep)), np.union1d(seen, hashes[~repeated])


def _in_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size == 0:
        return np.zeros(values.size, dtype=bool)
    index = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return sorted_values[index] == values
