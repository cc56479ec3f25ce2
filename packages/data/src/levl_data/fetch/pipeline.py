"""`levl-data fetch`: metadata -> selected rows -> img2dataset shards -> levl.shards/v1 manifest.

Each step is idempotent, so the same command after a crash, a kill or a Ctrl-C resumes: the
prepared input is reused, whole shards are kept, broken ones refetched, and the manifest is
written last, only when every shard is accounted for.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from levl_data.errors import DataError
from levl_data.fetch.img2dataset_run import run_img2dataset, shard_digits
from levl_data.fetch.metadata import (
    MetadataFile,
    read_caption_table,
    read_cc12m,
    read_datacomp,
    resolve_cc12m,
    resolve_datacomp,
)
from levl_data.fetch.options import FetchOptions
from levl_data.fetch.prepare import PreparedInput, prepare_input
from levl_data.fetch.progress import FetchProgress
from levl_data.fetch.resume import (
    WORK_DIR_NAME,
    ShardRecord,
    check_out_dir,
    claim_out_dir,
    finished_manifest,
    keep_complete_shards,
)
from levl_data.fetch.stats import aggregate
from levl_data.fetch.subset import load_uid_subset
from levl_data.manifest import write_manifest
from levl_data.shardscan import sha256_file
from levl_data.writer import manifest_data

KINDS = ("cc12m", "datacomp-l", "custom")
MEMBERS = {"image": "jpg", "caption": "txt", "json": "json"}


@dataclass(frozen=True)
class FetchRequest:
    """One fetch: which corpus, from which metadata, which subset, into which directory."""

    kind: str
    out_dir: Path
    metadata: list[str] = field(default_factory=list)
    subset_file: Path | None = None
    max_samples: int | None = None
    options: FetchOptions = FetchOptions()
    name: str | None = None
    split: str = "train"


@dataclass(frozen=True)
class FetchResult:
    manifest: Path
    resumed_shards: int
    already_complete: bool


def fetch(request: FetchRequest) -> FetchResult:
    """Run (or resume) a fetch; returns the manifest path once the shard set is complete."""
    _check_request(request)
    out_dir = request.out_dir.expanduser().absolute()
    check_out_dir(out_dir)
    subset = load_uid_subset(request.subset_file) if request.subset_file else None
    created = not (out_dir / WORK_DIR_NAME).exists()
    try:
        metadata = _resolve_metadata(request, out_dir / WORK_DIR_NAME / "metadata")
        identity = _identity(request, metadata)
        work_dir = claim_out_dir(out_dir, identity)
        if (done := finished_manifest(out_dir)) is not None:
            return FetchResult(done, 0, True)
        prepared = prepare_input(
            metadata, _reader(request), subset, request.max_samples, work_dir, _digest(identity)
        )
    except DataError:
        if created:
            shutil.rmtree(out_dir / WORK_DIR_NAME, ignore_errors=True)
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
        raise
    return _fetch_shards(request, out_dir, work_dir, metadata, prepared, identity)


def _fetch_shards(
    request: FetchRequest,
    out_dir: Path,
    work_dir: Path,
    metadata: list[MetadataFile],
    prepared: PreparedInput,
    identity: dict,
) -> FetchResult:
    options = request.options
    expected = _expected_shards(prepared, options.samples_per_shard)
    kept = keep_complete_shards(out_dir, work_dir, workers=options.processes)
    if set(kept) != expected:
        with FetchProgress(out_dir, expected, set(kept)):
            run_img2dataset(
                work_dir / "input", out_dir, options, len(expected), work_dir / "img2dataset.log"
            )
    records = keep_complete_shards(out_dir, work_dir, workers=options.processes)
    missing = sorted(expected - set(records))
    if missing:
        raise DataError(
            f"fetch into {out_dir}: {len(missing)} of {len(expected)} shards did not finish "
            f"(first {missing[0]}; see {work_dir / 'img2dataset.log'}); rerun the same command "
            "to resume"
        )
    data = _manifest(request, metadata, prepared, identity, [records[n] for n in sorted(records)])
    return FetchResult(write_manifest(out_dir, data), len(kept), False)


def _check_request(request: FetchRequest) -> None:
    if request.kind not in KINDS:
        raise ValueError(f"fetch kind {request.kind!r} is unknown (one of {', '.join(KINDS)})")
    if request.max_samples is not None and request.max_samples < 1:
        raise ValueError(f"--max-samples must be >= 1, got {request.max_samples}")
    if request.kind != "datacomp-l" and request.subset_file is not None:
        raise ValueError("--subset-uids applies to datacomp-l only (other rows have no uid)")
    if request.kind != "datacomp-l" and len(request.metadata) > 1:
        raise ValueError("cc12m takes one --metadata TSV (path or URL)")
    request.options.validate()


def _resolve_metadata(request: FetchRequest, download_dir: Path) -> list[MetadataFile]:
    if request.kind == "custom":
        path = Path(request.metadata[0]).absolute()
        return [MetadataFile(path, sha256_file(path))]
    if request.kind == "cc12m":
        return resolve_cc12m(request.metadata[0] if request.metadata else None, download_dir)
    return resolve_datacomp([Path(item) for item in request.metadata])


def _reader(request: FetchRequest):
    if request.kind == "cc12m":
        return read_cc12m
    if request.kind == "custom":
        return read_caption_table
    blur = request.options.blur_faces
    return lambda path: read_datacomp(path, blur)


def _identity(request: FetchRequest, metadata: list[MetadataFile]) -> dict:
    """What must not change between a fetch and its resume (parallelism may)."""
    subset_file = request.subset_file
    return {
        "kind": request.kind,
        "metadata_sha256": [item.sha256 for item in metadata],
        "subset_sha256": sha256_file(subset_file) if subset_file else None,
        "max_samples": request.max_samples,
        "image": request.options.image_identity(),
    }


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _expected_shards(prepared: PreparedInput, samples_per_shard: int) -> set[str]:
    total = sum(math.ceil(rows / samples_per_shard) for rows in prepared.rows)
    digits = shard_digits(total)
    return {f"{index:0{digits}d}" for index in range(total)}


def _manifest(
    request: FetchRequest,
    metadata: list[MetadataFile],
    prepared: PreparedInput,
    identity: dict,
    records: list[ShardRecord],
) -> dict:
    stats = aggregate([r.stats for r in records], prepared.attempted, prepared.dropped)
    stats.update(metadata_rows=prepared.metadata_rows, selected=prepared.selected)
    shards = [
        {
            "path": f"{r.name}.tar",
            "num_samples": r.num_samples,
            "bytes": r.bytes,
            "sha256": r.sha256,
        }
        for r in records
        if r.num_samples > 0
    ]
    if not shards:
        reasons = ", ".join(f"{k}={v}" for k, v in stats["failures"].items())
        raise DataError(
            f"fetch into {request.out_dir}: no image was written ({stats['attempted']} attempted; "
            f"{reasons}); check the metadata URLs and your network"
        )
    return manifest_data(
        name=request.name or request.kind,
        split=request.split,
        source=_source(request, metadata, identity),
        members=MEMBERS,
        shards=shards,
        image=_image(request.options),
        stats=stats,
    )


def _source(request: FetchRequest, metadata: list[MetadataFile], identity: dict) -> dict:
    files = []
    for item in metadata:
        entry = {"path": str(item.path), "sha256": item.sha256}
        if item.url:
            entry["url"] = item.url
        files.append(entry)
    if request.subset_file:
        subset = {
            "rule": "uids in DataComp subset file",
            "sha256": identity["subset_sha256"],
            "file": str(Path(request.subset_file).absolute()),
        }
    else:
        subset = {"rule": "all rows", "sha256": None}
    if request.max_samples is not None:
        subset["max_samples"] = request.max_samples
    options = request.options
    params = {
        "tool": "img2dataset",
        "tool_version": _img2dataset_version(),
        "distributor": options.distributor,
        "processes": options.processes,
        "threads": options.threads,
        "retries": options.retries,
        "timeout": options.timeout,
        "samples_per_shard": options.samples_per_shard,
    }
    return {"kind": request.kind, "metadata": files, "subset": subset, "params": params}


def _image(options: FetchOptions) -> dict:
    return {
        "policy": options.resize_mode,
        "size": options.image_size if options.resize_mode != "no" else None,
        "encoding": "jpeg",
        "max_pixels": options.max_pixels,
        "faces_blurred": options.blur_faces,
    }


def _img2dataset_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("img2dataset")
    except PackageNotFoundError:
        return "unknown"
