"""Write the synthetic world: train / eval-train / eval-test shard sets with manifests.

`write_world` is idempotent for the same (size, seed): rerunning `make demo` finds the complete
world and returns it without rewriting, while a directory holding anything else is refused so a
user's data is never mixed into, or overwritten by, a generated world.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from levl_data.errors import DataError, ManifestError
from levl_data.manifest import MANIFEST_NAME, Manifest, read_manifest
from levl_data.synth import vocab
from levl_data.synth.parallel import generate_samples
from levl_data.writer import ShardSetWriter

# Bump when the generator's output changes, so an old world on disk is not taken for this one.
WORLD_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "eval-train", "eval-test")
EVAL_SPLITS: frozenset[str] = frozenset({"eval-train", "eval-test"})


@dataclass(frozen=True)
class WorldSize:
    train: int
    eval_train: int
    eval_test: int
    image_size: int
    train_per_shard: int
    eval_per_shard: int

    def num_samples(self, split: str) -> int:
        return {"train": self.train, "eval-train": self.eval_train,
                "eval-test": self.eval_test}[split]

    def per_shard(self, split: str) -> int:
        return self.eval_per_shard if split in EVAL_SPLITS else self.train_per_shard


SIZES: dict[str, WorldSize] = {
    "micro": WorldSize(512, 192, 192, 64, 128, 96),
    "tiny": WorldSize(12000, 1000, 1000, 64, 1000, 500),
    "small": WorldSize(100000, 4000, 4000, 128, 5000, 1000),
    "medium": WorldSize(500000, 10000, 10000, 224, 10000, 2500),
}


def world_size(size: str) -> WorldSize:
    if size not in SIZES:
        raise DataError(f"synth size {size!r} is unknown (choose one of {', '.join(SIZES)})")
    return SIZES[size]


def world_params(size: str, seed: int) -> dict:
    """`source.params` of every split: what identifies this world."""
    return {"size": size, "seed": seed, "image_size": world_size(size).image_size,
            "version": WORLD_VERSION}


def world_labels() -> dict:
    """The manifest `labels`: class names, prompts, segmentation classes, QA answers."""
    return {
        "classes": list(vocab.SHAPES),
        "prompts": list(vocab.PROMPTS),
        "segmentation_classes": ["background", *vocab.SHAPES],
        "answers": vocab.answers(),
        "typical_background": dict(vocab.TYPICAL_BACKGROUND),
    }


def _existing_split(split_dir: Path, size: str, seed: int) -> Manifest | None:
    """The split's manifest if it is exactly this world; None if there is nothing to keep."""
    if split_dir.exists() and not split_dir.is_dir():
        raise DataError(f"{split_dir}: not a directory; choose another --out or delete it")
    if not split_dir.exists() or not any(split_dir.iterdir()):
        return None
    if not (split_dir / MANIFEST_NAME).is_file():
        raise DataError(
            f"{split_dir}: holds files but no {MANIFEST_NAME} (an interrupted or foreign "
            f"write); delete {split_dir.parent} and rerun levl-data synth"
        )
    try:
        manifest = read_manifest(split_dir)
    except ManifestError as exc:
        raise DataError(f"{exc} — delete {split_dir.parent} to regenerate the world") from None
    source = manifest.data["source"]
    found = source.get("params")
    if source["kind"] != "synthetic" or found != world_params(size, seed):
        raise DataError(
            f"{split_dir}: holds another dataset ({source['kind']} {found}), not the synth "
            f"world size={size} seed={seed}; choose another --out or delete it"
        )
    for shard, path in zip(manifest.shards, manifest.shard_paths(), strict=True):
        if path.stat().st_size != shard.bytes:
            raise DataError(f"{path}: truncated or replaced; delete {split_dir.parent} to "
                            "regenerate the world")
    return manifest


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: not a directory (pass a directory for the synth world)")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in SPLITS)
        if foreign:
            raise DataError(
                f"{out_dir}: already holds {foreign[0]!r}, not part of a synth world; "
                "choose an empty or new directory"
            )


def _write_split(out_dir: Path, split: str, size: str, seed: int, workers: int) -> Path:
    spec = world_size(size)
    n = spec.num_samples(split)
    samples: Iterator[dict] = generate_samples(
        seed, split, n, spec.image_size, extras=split in EVAL_SPLITS, workers=workers)
    with ShardSetWriter(out_dir / split, prefix=split, samples_per_shard=spec.per_shard(split)) as w:
        for sample in samples:
            w.write(sample)
        return w.finish(
            name=f"synth-{size}-seed{seed}",
            split=split,
            source={"kind": "synthetic", "metadata": [], "subset": {"rule": "all", "sha256": None},
                    "params": world_params(size, seed)},
            image={"policy": "synthetic", "size": spec.image_size, "encoding": "jpeg"},
            stats={"attempted": n, "written": n, "failures": {}},
            labels=world_labels(),
        )


def _default_workers(size: str) -> int:
    """Pool start-up and pickling cost more than they save below ~50k samples at 64 px."""
    return 1 if size in ("micro", "tiny") else max(1, min(8, os.cpu_count() or 1))


def write_world(out_dir: Path, size: str, seed: int, *, workers: int | None = None
                ) -> dict[str, Path]:
    """Generate (or find) the world; returns split -> manifest path.

    Each split draws from generators derived from (seed, split, index), so splits are
    independent and the bytes are the same for any `workers`. Default: one process for micro
    and tiny (tiny takes ~30 s on 2 cores), up to 8 worker processes for small and medium.
    """
    out_dir = Path(out_dir).absolute()
    world_size(size)
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"synth seed {seed!r} must be a non-negative integer")
    _check_out_dir(out_dir)
    existing = {split: _existing_split(out_dir / split, size, seed) for split in SPLITS}
    n_workers = workers if workers is not None else _default_workers(size)
    paths = {}
    for split in SPLITS:
        found = existing[split]
        paths[split] = found.path if found else _write_split(out_dir, split, size, seed, n_workers)
    return paths
