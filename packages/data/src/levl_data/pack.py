"""`levl-data pack`: local images + captions (or a table of them) into a levl shard set.

Sources: a folder of `NAME.<image ext>` + `NAME.txt` pairs, or a CSV/TSV/parquet table with an
image column (path relative to the table, or a URL) and a caption column. Local images go
through ShardSetWriter: each is checked (pixel ceiling read from the header before decoding,
then a full decode), optionally resized, and bad ones are skipped and counted. A table of URLs
is a web fetch, so it goes through the same img2dataset pipeline as CC12M (kind `custom`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import PIL.Image

from levl_data.errors import DataError
from levl_data.fetch.metadata import read_caption_table
from levl_data.fetch.resume import check_out_dir
from levl_data.shardscan import sha256_file
from levl_data.writer import ShardSetWriter

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
TABLE_EXTENSIONS = {".csv", ".tsv", ".parquet"}
MAX_PIXELS = 89_478_485


def pack_shards(
    source: Path,
    out_dir: Path,
    *,
    samples_per_shard: int = 1000,
    image_size: int | None = None,
    name: str | None = None,
    split: str = "train",
    max_pixels: int = MAX_PIXELS,
) -> Path:
    """Pack `source` into `out_dir`; returns the manifest path."""
    source, out_dir = Path(source).absolute(), Path(out_dir).absolute()
    check_out_dir(out_dir)
    rows, metadata = _rows(source)
    if rows and all(_is_url(image) for image, _ in rows):
        return _pack_urls(source, out_dir, samples_per_shard, image_size, name, split)
    if any(_is_url(image) for image, _ in rows):
        raise DataError(f"pack source {source}: mixes URLs and local paths (split it in two)")
    created = not out_dir.exists()
    try:
        return _pack_local(source, out_dir, rows, metadata, samples_per_shard, image_size, name,
                           split, max_pixels)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed pack leaves no empty directory it made (never a file)
        raise


def _pack_local(source: Path, out_dir: Path, rows: list, metadata: list[dict],
                samples_per_shard: int, image_size: int | None, name: str | None, split: str,
                max_pixels: int) -> Path:
    listing = hashlib.sha256()
    with ShardSetWriter(out_dir, samples_per_shard=samples_per_shard) as writer:
        for index, (image_path, caption) in enumerate(rows):
            sample = _sample(Path(image_path), caption, image_size, max_pixels, listing)
            if isinstance(sample, str):
                writer.record_failure(sample)
                continue
            writer.write({"__key__": f"{index:09d}", **sample})
        if writer.written == 0:
            writer.abort()
            raise DataError(f"pack source {source}: no readable image + caption pair found")
        return writer.finish(
            name=name or source.stem,
            split=split,
            source={
                "kind": "custom",
                "metadata": metadata,
                "subset": {"rule": "all rows", "sha256": None},
                "params": {"source": str(source), "content_sha256": listing.hexdigest()},
            },
            image=_image_policy(image_size, max_pixels),
            members={"image": "jpg", "caption": "txt", "json": "json"},
        )


def _rows(source: Path) -> tuple[list[tuple[str, str | bytes | None]], list[dict]]:
    """(image path or URL, caption or None) pairs, and the metadata files they came from."""
    if source.is_dir():
        return list(_folder_pairs(source)), []
    if source.is_file() and source.suffix.lower() in TABLE_EXTENSIONS:
        return _table_rows(source), [{"path": str(source), "sha256": sha256_file(source)}]
    raise DataError(
        f"pack source {source}: not a folder or a .csv/.tsv/.parquet table (pass --from)"
    )


def _folder_pairs(folder: Path) -> Iterator[tuple[str, str | bytes | None]]:
    """A caption file that is not UTF-8 comes back as its bytes: one bad sample, skipped and
    counted by `_sample`, must not abort the whole pack."""
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    for image in images:
        caption_file = image.with_suffix(".txt")
        yield str(image), _caption_text(caption_file) if caption_file.is_file() else None


def _caption_text(caption_file: Path) -> str | bytes:
    raw = caption_file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _table_rows(table_path: Path) -> list[tuple[str, str | None]]:
    table = read_caption_table(table_path)
    root = table_path.parent
    return [
        (image if image and _is_url(image) else str(root / (image or "")), caption)
        for image, caption in zip(
            table["url"].to_pylist(), table["caption"].to_pylist(), strict=True
        )
    ]


def _sample(
    image_path: Path, caption: str | bytes | None, image_size: int | None, max_pixels: int,
    listing,
) -> dict | str:
    """The sample's members, or the failure reason (a str) when it must be skipped."""
    if caption is None:
        return "missing_caption"
    if isinstance(caption, bytes):
        return "undecodable_caption"  # the caption file is not UTF-8
    if not caption.strip():
        return "empty_caption"
    try:
        raw = image_path.read_bytes()
    except OSError:
        return "missing_image"
    listing.update(f"{image_path.name}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
    try:
        with PIL.Image.open(io.BytesIO(raw)) as image:
            if image.width * image.height > max_pixels:
                return "image_too_large"  # checked from the header, before decoding
            image.load()
            stored, width, height = _stored_jpeg(image, raw, image_size)
            original = image.size
    except PIL.Image.DecompressionBombError:  # PIL refuses > 2x its ceiling at open, from the header
        return "image_too_large"
    except (OSError, SyntaxError, ValueError):
        return "undecodable"
    meta = {
        "source": image_path.name,
        "width": width,
        "height": height,
        "original_width": original[0],
        "original_height": original[1],
    }
    return {"jpg": stored, "txt": caption.strip(), "json": meta}


def _stored_jpeg(image: PIL.Image.Image, raw: bytes, image_size: int | None):
    """Keep original JPEG bytes when no resize is asked; otherwise resize + encode JPEG."""
    if image_size is None and image.format == "JPEG":
        return raw, image.width, image.height
    rgb = image.convert("RGB")
    if image_size is not None:
        scale = image_size / min(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, PIL.Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), rgb.width, rgb.height


def _image_policy(image_size: int | None, max_pixels: int) -> dict:
    policy = "keep_ratio" if image_size else "original"
    return {"policy": policy, "size": image_size, "encoding": "jpeg", "max_pixels": max_pixels}


def _pack_urls(source, out_dir, samples_per_shard, image_size, name, split) -> Path:
    from levl_data.fetch import FetchOptions, FetchRequest, fetch

    options = FetchOptions(
        image_size=image_size or 256,
        resize_mode="keep_ratio" if image_size else "no",
        blur_faces=False,
        samples_per_shard=samples_per_shard,
        processes=2,
        threads=16,
    )
    request = FetchRequest(
        kind="custom",
        out_dir=out_dir,
        metadata=[str(source)],
        options=options,
        name=name or source.stem,
        split=split,
    )
    return fetch(request).manifest


def _is_url(value: str | None) -> bool:
    return bool(value) and value.startswith(("http://", "https://"))
