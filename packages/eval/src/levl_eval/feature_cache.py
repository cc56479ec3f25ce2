"""Frozen features on disk, so a second `levl-eval` run on the same inputs skips the forward passes.

An entry is keyed by sha256 over everything the features depend on:

- the weights: sha256 of the checkpoint's `model.safetensors` (a random baseline: of its state
  dict), plus the model config;
- the transform the features were extracted under: the checkpoint's image preprocessing (size,
  mean, std, interpolation, resize) with the protocol's geometry applied (`levl_eval.geometry`:
  the probes' 256/224 crop on real datasets, the dense protocols' full frame), and whether
  per-pixel labels are read with it, through it or untouched (the scored split's frames);
- the data: every field of the split, with a manifest replaced by its fingerprint (sha256 over
  its shards) and a file list by each sample's fields plus its files' size and mtime;
- the kind of features (CLS/z/pred or patch tokens) and the layout of the stored dataclass.

A changed input gives another key, so a stale entry is never read; old entries are simply left
behind (delete the directory to reclaim space). The default directory is
$LEVL_FEATURE_CACHE, else $XDG_CACHE_HOME/levl/features, else ~/.cache/levl/features — not under
--out, because publishing a report replaces --out whole. Entries are written atomically
(temp file + rename) and read with torch.load(weights_only=True): tensors and plain containers
only. An entry that cannot be read counts as a miss and is rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from levl_data.shardscan import sha256_file
from levl_eval.featureset import EvalSplit, FileSample

FORMAT_VERSION = 1
T = TypeVar("T")


def default_cache_dir() -> Path:
    """$LEVL_FEATURE_CACHE, else $XDG_CACHE_HOME/levl/features, else ~/.cache/levl/features."""
    if os.environ.get("LEVL_FEATURE_CACHE"):
        return Path(os.environ["LEVL_FEATURE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "levl" / "features"


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (for weights not read from a file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_identity(model: torch.nn.Module, checkpoint_dir: str | None) -> str:
    """The checkpoint file's sha256, or the state dict's for a model built in memory."""
    if checkpoint_dir is not None:
        return "file:" + sha256_file(Path(checkpoint_dir) / "model.safetensors")
    return "state:" + state_dict_sha256(model)


def file_stat(path: Path | None) -> list | None:
    if path is None:
        return None
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def files_digest(files: tuple[FileSample, ...]) -> str:
    """One sha256 over each sample's fields and the size and mtime of its image and mask files."""
    digest = hashlib.sha256()
    for sample in files:
        digest.update(repr(sample).encode())
        digest.update(json.dumps([file_stat(sample.image), file_stat(sample.mask)]).encode())
    return digest.hexdigest()


def split_identity(split: EvalSplit) -> dict:
    """Every field of the split, the manifest as its fingerprint and the files as one digest."""
    identity = {}
    for item in dataclasses.fields(split):
        value = getattr(split, item.name)
        if item.name == "manifest":
            value = None if value is None else {"fingerprint": value.fingerprint,
                                                "num_samples": value.num_samples}
        elif item.name == "files":
            value = files_digest(value)
        identity[item.name] = value if isinstance(value, dict) else repr(value)
    return identity


def entry_key(kind: str, encoder_identity: dict, split: EvalSplit, layout: type) -> str:
    """sha256 of one entry's inputs (see the module docstring)."""
    document = {"format": FORMAT_VERSION, "kind": kind, "encoder": encoder_identity,
                "split": split_identity(split),
                "layout": [f.name for f in dataclasses.fields(layout)]}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=repr).encode()).hexdigest()


@dataclass
class FeatureCache:
    """A directory of feature entries, counting this process's hits and misses."""

    root: Path
    hits: int = 0
    misses: int = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def load(self, key: str, layout: type[T]) -> T | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return layout(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # a truncated or foreign file: extract again and overwrite it
            return None

    def store(self, key: str, features: object) -> None:
        """Write via a temp file beside the entry + rename: a reader never sees half a file."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        fields = {f.name: getattr(features, f.name) for f in dataclasses.fields(features)}
        try:
            torch.save(fields, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get_or_extract(self, key: str, layout: type[T], extract: Callable[[], T]) -> T:
        """The stored entry, or `extract()` stored for next time."""
        found = self.load(key, layout)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        features = extract()
        self.store(key, features)
        return features

    def summary(self) -> str:
        return f"feature cache {self.root}: {self.hits} hit(s), {self.misses} miss(es)"
