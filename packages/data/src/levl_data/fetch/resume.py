"""Make a rerun of a killed fetch finish the job, and refuse an out dir holding something else.

img2dataset's incremental mode skips a shard whenever its `NNNNN_stats.json` exists and redoes
the rest. That is right only if every shard with stats is whole, so before each run every such
shard is checked: its tar parses to the end, holds as many samples as the stats say were written,
its parquet exists, and its sha256 still matches what an earlier check recorded in the ledger.
Anything else is deleted and so refetched; shard ids come from the fixed prepared input, so the
refetched shard holds the same samples under the same keys.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from levl_data.errors import DataError
from levl_data.fetch.stats import read_shard_stats
from levl_data.jsontext import parse_json
from levl_data.manifest import MANIFEST_NAME, atomic_write_bytes
from levl_data.shardscan import scan_shard

WORK_DIR_NAME = ".levl-fetch"
REQUEST_NAME = "request.json"
LEDGER_NAME = "shards.json"


@dataclass(frozen=True)
class ShardRecord:
    """A verified img2dataset shard: tar facts plus the stats that produced it."""

    name: str
    num_samples: int
    bytes: int
    sha256: str
    mtime_ns: int
    stats: dict


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before writing anything, a directory with files no levl fetch wrote."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"out dir {out_dir}: exists and is not a directory (pass a new --out)")
    if (out_dir / WORK_DIR_NAME / REQUEST_NAME).is_file():
        return
    foreign = sorted(entry.name for entry in out_dir.iterdir())
    if foreign:
        raise DataError(
            f"out dir {out_dir}: already holds {foreign[0]} (another dataset, not this fetch); "
            "nothing was written — pass an empty or new --out"
        )


def claim_out_dir(out_dir: Path, request: dict) -> Path:
    """Record this fetch's identity in the work dir, or refuse a different earlier fetch."""
    work_dir = out_dir / WORK_DIR_NAME
    request_file = work_dir / REQUEST_NAME
    if request_file.is_file():
        earlier = parse_json(request_file.read_text("utf-8"))
        differing = [
            key
            for key in sorted(set(earlier) | set(request))
            if earlier.get(key) != request.get(key)
        ]
        if differing:
            raise DataError(
                f"out dir {out_dir}: holds a different fetch ({differing[0]} differs: "
                f"{json.dumps(earlier.get(differing[0]))[:80]}); nothing was written — pass a "
                "new --out, or rerun with the original options to resume"
            )
        return work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(request_file, json.dumps(request, indent=2, sort_keys=True).encode())
    return work_dir


def keep_complete_shards(out_dir: Path, work_dir: Path,
                         workers: int = 1) -> dict[str, ShardRecord]:
    """Verify each shard that has stats; delete incomplete ones and strays; update the ledger.

    Reading and hashing every tar is the one per-sample cost levl adds to img2dataset's
    download: with `workers` > 1 the shards are checked in that many processes.
    """
    ledger = _read_ledger(work_dir)
    records: dict[str, ShardRecord] = {}
    names = [f.name.removesuffix("_stats.json") for f in sorted(out_dir.glob("*_stats.json"))]
    checks = [(out_dir, name, out_dir / f"{name}_stats.json", ledger.get(name)) for name in names]
    for name, record in zip(names, _starmap(_verified, checks, workers), strict=True):
        if record is None:
            _remove_shard(out_dir, name)
        else:
            records[name] = record
    for stray in [*out_dir.glob("*.tar"), *out_dir.glob("*.parquet")]:
        if stray.stem not in records:
            stray.unlink()
    shutil.rmtree(out_dir / "_tmp", ignore_errors=True)
    atomic_write_bytes(
        work_dir / LEDGER_NAME,
        json.dumps({name: asdict(r) for name, r in records.items()}, indent=1).encode(),
    )
    return records


def _starmap(function, items: list[tuple], workers: int) -> list:
    """`function(*item)` for each item, in a pool of forked processes (a fork costs a few ms, the
    children inherit the imports) when there are several items and workers, else here."""
    if workers <= 1 or len(items) < 2:
        return [function(*item) for item in items]
    with multiprocessing.get_context("fork").Pool(min(workers, len(items))) as pool:
        return pool.starmap(function, items, chunksize=1)


def _verified(out_dir: Path, name: str, stats_file: Path, known: dict | None) -> ShardRecord | None:
    """The shard's record if it is whole, else None (it will be refetched)."""
    tar, parquet = out_dir / f"{name}.tar", out_dir / f"{name}.parquet"
    try:
        stats = read_shard_stats(stats_file)
    except DataError:
        return None
    if not tar.is_file() or not parquet.is_file() or not _parquet_rows_match(parquet, stats):
        return None
    stat = tar.stat()
    if known and known["bytes"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
        return ShardRecord(**{**known, "stats": stats})
    scan = scan_shard(tar)
    if scan.error is not None or scan.num_samples != stats["successes"]:
        return None
    if known and known["sha256"] != scan.sha256:
        return None
    return ShardRecord(name, scan.num_samples, scan.bytes, scan.sha256, stat.st_mtime_ns, stats)


def _parquet_rows_match(parquet: Path, stats: dict) -> bool:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(parquet).metadata.num_rows == stats["count"]
    except Exception:  # a truncated parquet has no footer: any read error means redo
        return False


def _remove_shard(out_dir: Path, name: str) -> None:
    for suffix in ("_stats.json", ".tar", ".parquet"):
        (out_dir / f"{name}{suffix}").unlink(missing_ok=True)


def _read_ledger(work_dir: Path) -> dict[str, dict]:
    try:
        return parse_json((work_dir / LEDGER_NAME).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def finished_manifest(out_dir: Path) -> Path | None:
    """The manifest of an already finished fetch into `out_dir`, if there is one."""
    manifest = out_dir / MANIFEST_NAME
    return manifest if manifest.is_file() else None
