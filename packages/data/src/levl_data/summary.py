"""Read-only views of a shard set for the CLI: a summary and a decode check."""

from __future__ import annotations

import io
from typing import Any

import PIL.Image

from levl_data.manifest import Manifest
from levl_data.shardscan import iter_members


def summarize(manifest: Manifest) -> dict[str, Any]:
    """The facts a person checks first about a dataset version, in display order."""
    data = manifest.data
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
        "stats": data["stats"],
        "labels": _labels_summary(manifest.labels),
    }


def decode_problems(manifest: Manifest, limit: int) -> list[str]:
    """Decode the first `limit` images in stored order; one line per image PIL cannot read."""
    image_member = manifest.members["image"].lower()
    problems: list[str] = []
    decoded = 0
    for shard_path in manifest.shard_paths():
        if decoded >= limit or not shard_path.is_file():
            continue
        try:
            for key, extension, content in iter_members(shard_path):
                if extension != image_member:
                    continue
                if decoded >= limit:
                    break
                decoded += 1
                error = _decode_error(content)
                if error:
                    problems.append(f"{shard_path}: sample {key}: undecodable image ({error})")
        except Exception as exc:  # a broken tar is already reported by verify_manifest
            problems.append(f"{shard_path}: cannot read images ({type(exc).__name__}: {exc})")
    return problems


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
