"""Read-only views of a shard set for the CLI: a summary, histograms and a decode check."""

from __future__ import annotations

import io
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import PIL.Image

from levl_data.manifest import Manifest
from levl_data.shardscan import iter_members

CAPTION_CHAR_EDGES = (0, 8, 16, 32, 64, 128, 256, 512)
IMAGE_SIDE_EDGES = (0, 32, 64, 128, 256, 512, 1024, 2048)


def summarize(manifest: Manifest) -> dict[str, Any]:
    """The facts a person checks first about a dataset version, in display order."""
    data = manifest.data
    stats = data["stats"]
    attempted = stats["attempted"]
    return {
        "manifest": str(manifest.path),
        "name": manifest.name,
        "split": manifest.split,
        "samples": manifest.num_samples,
        "shards": len(manifest.shards),
        "bytes": sum(shard.bytes for shard in manifest.shards),
        "fingerprint": manifest.fingerprint,
        "format": data["format"],
        "source": data["source"]["kind"],
        "created_at": data["created_at"],
        "members": manifest.members,
        "image": data["image"],
        "stats": stats,
        "success_rate": round(stats["written"] / attempted, 6) if attempted else None,
        "labels": _labels_summary(manifest.labels),
    }


def histograms(manifest: Manifest, limit: int) -> dict[str, Any]:
    """Caption-length and image-size histograms over up to `limit` samples spread over shards.

    Image sizes come from the image header (no full decode), so this stays cheap; bins are
    `[edge_i, edge_i+1)` with the last bin open-ended, labelled by their lower edge.
    """
    caption_bins, side_bins = [0] * len(CAPTION_CHAR_EDGES), [0] * len(IMAGE_SIDE_EDGES)
    counted = 0
    if manifest.data["format"] == "ffcv":
        from levl_data.ffcv_loader import spread_captions_and_sizes  # optional extra

        spread = spread_captions_and_sizes(manifest, limit)
    else:
        spread = _spread_samples(manifest, limit)
    for caption, size in spread:
        counted += 1
        if caption is not None:
            caption_bins[bisect_right(CAPTION_CHAR_EDGES, len(caption)) - 1] += 1
        if size is not None:
            side_bins[bisect_right(IMAGE_SIDE_EDGES, min(size)) - 1] += 1
    return {
        "samples_scanned": counted,
        "caption_chars": dict(zip(map(str, CAPTION_CHAR_EDGES), caption_bins, strict=True)),
        "image_shorter_side": dict(zip(map(str, IMAGE_SIDE_EDGES), side_bins, strict=True)),
    }


def decode_problems(manifest: Manifest, per_shard: int) -> list[str]:
    """Decode `per_shard` images of each shard, evenly spaced; one line per unreadable image.

    An ffcv file's images were all decoded when it was converted, so there is nothing to do.
    """
    problems: list[str] = []
    if manifest.data["format"] == "ffcv":
        return problems
    for shard, shard_path in zip(manifest.shards, manifest.shard_paths(), strict=True):
        if per_shard <= 0 or not shard_path.is_file():
            continue
        wanted = _evenly_spaced(shard.num_samples, per_shard)
        try:
            for key, content in _images(manifest, shard_path, wanted):
                error = _decode_error(content)
                if error:
                    problems.append(f"{shard_path}: sample {key}: undecodable image ({error})")
        except Exception as exc:  # a broken tar is already reported by verify_manifest
            problems.append(f"{shard_path}: cannot read images ({type(exc).__name__}: {exc})")
    return problems


def decoded_count(manifest: Manifest, per_shard: int) -> int:
    """How many images decode_problems looks at."""
    if manifest.data["format"] == "ffcv":
        return 0
    return sum(min(shard.num_samples, max(per_shard, 0)) for shard in manifest.shards)


def _evenly_spaced(count: int, wanted: int) -> set[int]:
    if wanted >= count:
        return set(range(count))
    return {index * count // wanted for index in range(wanted)}


def _images(manifest: Manifest, shard_path, wanted: set[int]) -> Iterator[tuple[str, bytes]]:
    """(key, image bytes) of the samples at positions `wanted` (in tar order) of one shard."""
    image_member = manifest.members["image"].lower()
    position, previous = -1, None
    for key, extension, content in iter_members(shard_path):
        if key != previous:
            position, previous = position + 1, key
        if extension == image_member and position in wanted:
            yield key, content


def _spread_samples(
    manifest: Manifest, limit: int
) -> Iterator[tuple[str | None, tuple[int, int] | None]]:
    """(caption, image size) of up to `limit` samples, the first few of every shard."""
    shards = manifest.shard_paths()
    if limit <= 0 or not shards:
        return
    per_shard = max(1, -(-limit // len(shards)))
    image_member, caption_member = manifest.members["image"], manifest.members["caption"]
    emitted = 0
    for shard_path in shards:
        for sample in _grouped(shard_path, per_shard):
            if emitted >= limit:
                return
            emitted += 1
            caption, image = sample.get(caption_member), sample.get(image_member)
            yield (
                caption.decode("utf-8", "replace") if caption is not None else None,
                _image_size(image) if image is not None else None,
            )


def _grouped(shard_path, count: int) -> Iterator[dict[str, bytes]]:
    sample: dict[str, bytes] = {}
    previous, produced = None, 0
    for key, extension, content in iter_members(shard_path):
        if key != previous and sample:
            yield sample
            produced += 1
            if produced >= count:
                return
            sample = {}
        previous = key
        sample[extension] = content
    if sample:
        yield sample


def _image_size(content: bytes) -> tuple[int, int] | None:
    try:
        with PIL.Image.open(io.BytesIO(content)) as image:
            return image.size
    except Exception:
        return None


def _decode_error(content: bytes) -> str | None:
    try:
        with PIL.Image.open(io.BytesIO(content)) as image:
            image.load()
    except Exception as exc:
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def _labels_summary(labels: dict | None) -> dict[str, int] | None:
    """Counts per label list (classes, prompts, ...); the lists themselves are in the manifest."""
    if labels is None:
        return None
    return {
        key: len(value) if isinstance(value, list | dict) else 1 for key, value in labels.items()
    }
