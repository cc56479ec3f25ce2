"""`levl-data convert MANIFEST --to ffcv --out DIR`: a webdataset shard set as one ffcv `.beton`.

Two passes over the tars. The first decodes every sample exactly as the webdataset loader does
(same skip reasons) and keeps only where each good sample's members sit; the second lets ffcv's
writer processes re-read those byte ranges and encode them. ffcv's writer hangs when a worker
raises, so nothing may fail in the second pass: every sample it sees already decoded once.
The `.beton` is written under a temporary name and the manifest last, as for tar shards.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from levl_data.errors import DataError
from levl_data.ffcv_format import BETON_NAME, MEMBERS, import_ffcv
from levl_data.jsontext import parse_json
from levl_data.loader import decode_raw_sample
from levl_data.manifest import MANIFEST_NAME, Manifest, fsync_dir, read_manifest, write_manifest
from levl_data.shardscan import hash_file, sample_key
from levl_data.writer import manifest_data

FORMATS = ("ffcv",)


@dataclass(frozen=True)
class _Located:
    """Where one good sample's members sit: shard index and (offset, size) per member."""

    shard: int
    key: str
    image: tuple[int, int]
    caption: tuple[int, int]
    json: tuple[int, int] | None


def convert(
    manifest: str | Path, out_dir: str | Path, *, to: str = "ffcv", workers: int = 1,
    jpeg_quality: int = 95, command: str | None = None,
) -> Path:
    """Convert a webdataset shard set; returns the new manifest's path.

    Undecodable samples are dropped and counted in the new manifest's `stats.failures` (the
    loader would skip them anyway). One writer worker gives byte-identical output for the same
    input; more workers are faster but lay pages out in the order they finish.
    """
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    if workers < 1 or not 1 <= jpeg_quality <= 100:
        raise ValueError("--workers must be >= 1 and --jpeg-quality in 1..100")
    source = read_manifest(manifest)
    _check_source(source)
    import_ffcv()
    out = _claim_out_dir(Path(out_dir))
    located, failures = locate_samples(source)
    if not located:
        raise DataError(
            f"manifest {source.path}: no sample decodes, so there is nothing to convert"
        )
    shard = _write_beton(out / BETON_NAME, source, located, workers, jpeg_quality)
    data = manifest_data(
        name=source.name, split=source.split, source=_provenance(source), members=dict(MEMBERS),
        shards=[shard], image={**source.data["image"], "encoding": "jpeg",
                               "jpeg_quality": jpeg_quality},
        stats={"attempted": source.num_samples, "written": len(located),
               "failures": dict(sorted(failures.items()))},
        command=command if command is not None else shlex.join(sys.argv), format="ffcv",
    )
    if source.labels is not None:
        data["labels"] = source.labels
    return write_manifest(out, data)


def _check_source(source: Manifest) -> None:
    if source.data["format"] != "webdataset":
        raise DataError(
            f"manifest {source.path}: format is {source.data['format']}, convert reads "
            "webdataset shard sets; pass the manifest of the tar shards"
        )
    if source.members.get("extra"):
        raise DataError(
            f"manifest {source.path}: has extra members {source.members['extra']}, which an "
            "ffcv file of image, caption and json cannot hold; convert a set without them"
        )


def _claim_out_dir(out: Path) -> Path:
    out = out.expanduser().absolute()
    for name in (MANIFEST_NAME, BETON_NAME):
        if (out / name).exists():
            raise DataError(
                f"output {out}: already holds {name} (a dataset version is immutable; "
                "convert into an empty directory or delete the old one)"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _provenance(source: Manifest) -> dict:
    """The source block, plus which dataset version this file was converted from."""
    block = json.loads(json.dumps(source.data["source"]))
    block.setdefault("params", {})["converted_from"] = {
        "manifest": str(source.path), "fingerprint": source.fingerprint, "format": "webdataset",
    }
    return block


def locate_samples(source: Manifest) -> tuple[list[_Located], Counter[str]]:
    """Every sample that decodes as the loader decodes it, in shard order; skips by reason."""
    located: list[_Located] = []
    failures: Counter[str] = Counter()
    for index, path in enumerate(source.shard_paths()):
        for key, spans, raw in _tar_samples(path):
            _, reason = decode_raw_sample({**raw, "__key__": key}, source.members)
            if reason is not None:
                failures[reason] += 1
                continue
            json_member = source.members.get("json")
            located.append(_Located(
                shard=index, key=key, image=spans[source.members["image"]],
                caption=spans[source.members["caption"]],
                json=spans.get(json_member) if json_member else None,
            ))
    return located, failures


def _tar_samples(path: Path):
    """(key, {member: (offset, size)}, {member: bytes}) per sample of one tar, in tar order."""
    key, spans, raw = None, {}, {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                member_key = sample_key(info.name)
                if member_key != key and key is not None:
                    yield key, spans, raw
                    spans, raw = {}, {}
                key = member_key
                member = info.name.rpartition("/")[2].split(".", 1)[-1]
                spans[member] = (info.offset_data, info.size)
                raw[member] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"shard {path}: unreadable tar ({type(exc).__name__}: {exc}); run `levl-data verify`"
        ) from None
    if key is not None:
        yield key, spans, raw


class _LocatedSamples:
    """The indexable dataset ffcv's writer workers read: (image, caption, key, meta) tuples."""

    def __init__(self, shard_paths: list[Path], located: list[_Located]):
        self.shard_paths = shard_paths
        self.located = located
        self._files: dict[int, io.BufferedReader] = {}

    def __len__(self) -> int:
        return len(self.located)

    def __getitem__(self, index: int) -> tuple:
        sample = self.located[index]
        with PIL.Image.open(io.BytesIO(self._read(sample.shard, sample.image))) as image:
            pixels = np.asarray(image.convert("RGB"))
        caption = self._read(sample.shard, sample.caption).decode("utf-8").strip()
        meta = parse_json(self._read(sample.shard, sample.json)) if sample.json else {}
        return pixels, caption, sample.key, meta

    def _read(self, shard: int, span: tuple[int, int]) -> bytes:
        handle = self._files.get(shard)
        if handle is None:  # opened lazily, so each forked writer worker has its own handles
            handle = self._files[shard] = open(self.shard_paths[shard], "rb")  # noqa: SIM115
        handle.seek(span[0])
        return handle.read(span[1])


def _write_beton(
    target: Path, source: Manifest, located: list[_Located], workers: int, jpeg_quality: int
) -> dict:
    """Write `target` via a temp file; return its manifest shard entry."""
    from ffcv.fields import JSONField, RGBImageField
    from ffcv.writer import DatasetWriter

    fields = {
        "image": RGBImageField(write_mode="jpg", jpeg_quality=jpeg_quality),
        "caption": JSONField(), "key": JSONField(), "json": JSONField(),
    }
    tmp = target.with_name(target.name + ".tmp")
    try:
        writer = DatasetWriter(str(tmp), fields, num_workers=workers)
        writer.from_indexed_dataset(_LocatedSamples(source.shard_paths(), located), chunksize=64)
        size, digest = _fsync_and_hash(tmp)
        tmp.replace(target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"path": target.name, "num_samples": len(located), "bytes": size, "sha256": digest}


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    return hash_file(path)
