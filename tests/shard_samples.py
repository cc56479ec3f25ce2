"""Reading written shard sets back in the data tests (`pythonpath = tests`): plain tarfile, so a
test of a writer does not depend on the loader it feeds."""

from __future__ import annotations

import tarfile
from collections import defaultdict
from pathlib import Path

from levl_data.manifest import read_manifest


def read_samples(manifest_path: Path) -> list[dict[str, bytes]]:
    """All samples of a shard set, grouped by key, in order."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in read_manifest(manifest_path).shard_paths():
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
    return list(samples.values())


def shard_hashes(paths: dict[str, Path]) -> dict[str, list[str]]:
    """Each split's shard sha256s, from its manifest."""
    return {split: [s.sha256 for s in read_manifest(p).shards] for split, p in paths.items()}
