"""A shard set that fails on one rank only, shared by the rank-failure tests (`pythonpath =
tests`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from levl_data.testing import make_tiny_shards


def shards_failing_on(root: Path, rank: int, world_size: int = 2) -> Path:
    """48 samples in 6 shards, which the loader splits over ranks as shards[rank::world_size];
    `rank`'s shards are replaced, after the manifest was written, by shards of undecodable
    images (what bit rot or a half-copied dataset looks like). The manifest still validates, so
    only that rank's loader fails, on its first shard (its sha256, or its images over
    max_failure_rate): a DataError that names the manifest and `levl-data verify`."""
    manifest = make_tiny_shards(root / "data", n=48, image_size=32)
    corrupt = make_tiny_shards(root / "corrupt", n=48, image_size=32, bad=48)
    for shard in sorted(manifest.parent.glob("*.tar"))[rank::world_size]:
        shutil.copyfile(corrupt.parent / shard.name, shard)
    return manifest
