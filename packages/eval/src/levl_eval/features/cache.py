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
--out, because publishing a report replaces --out whole. An entry is a directory (see
`FeatureCache`): its small fields are read with torch.load(weights_only=True), tensors and plain
containers only, and its large arrays (patch tokens, label maps, CLS features) are raw files mapped into memory
(`levl_eval.features.spill`), never loaded whole. Entries appear atomically (a scratch directory
renamed into place); an entry that cannot be read counts as a miss and is replaced. A crash
mid-extraction leaves its scratch directory under `tmp/`; the next extraction removes it once nothing has
been written there for a day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from levl_data.shardscan import sha256_file
from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.features.spill import RaggedMaps, SpillDir, array_bytes, array_file, map_array

FORMAT_VERSION = 2  # 2: an entry is a directory with its large arrays as raw files
FIELDS_FILE, SPILLED_KEY = "fields.pt", "__spilled__"
ABANDONED_AFTER_S = 24 * 3600  # a scratch directory untouched this long is a crashed extraction's
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


def dtype_named(name: str) -> torch.dtype:
    """torch.float16 from "torch.float16" (as str() writes a dtype)."""
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a dtype: {name!r}")
    return dtype


def spilled_fields(features: object, spill: SpillDir) -> dict[str, dict]:
    """Each field whose array the extraction wrote into `spill` (`levl_eval.features.spill`): its
    dtype and shape, and for `RaggedMaps` each map's shape. Such arrays stay files in the entry."""
    described = {}
    for item in dataclasses.fields(features):
        value = getattr(features, item.name)
        if not spill.file(item.name).is_file():
            continue
        array = value.values_P if isinstance(value, RaggedMaps) else value
        described[item.name] = {"dtype": str(array.dtype), "shape": list(array.shape)}
        if isinstance(value, RaggedMaps):
            described[item.name]["ragged"] = [list(shape) for shape in value.shapes]
    return described


def mapped_field(entry: Path, name: str, described: dict) -> torch.Tensor | RaggedMaps:
    """A spilled field read back mapped, after checking its file holds exactly its bytes."""
    path, dtype, shape = array_file(entry, name), dtype_named(described["dtype"]), tuple(described["shape"])
    if path.stat().st_size != array_bytes(dtype, shape):
        raise ValueError(f"{path}: {path.stat().st_size} bytes, not {array_bytes(dtype, shape)}")
    array = map_array(path, dtype, shape)
    if "ragged" in described:
        return RaggedMaps(array, tuple(tuple(size) for size in described["ragged"]))
    return array


@dataclass
class FeatureCache:
    """A directory of feature entries, counting this process's hits and misses.

    An entry is a directory: `fields.pt` (the small fields, and the dtype and shape of each
    spilled one) and one raw `<field>.bin` per array the extraction spilled, read back mapped.
    Extraction writes straight into a scratch directory under `tmp/`, renamed into place whole
    once `fields.pt` is written: a reader never sees half an entry.
    """

    root: Path
    hits: int = 0
    misses: int = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str, layout: type[T]) -> T | None:
        entry = self.path(key)
        if not (entry / FIELDS_FILE).is_file():
            return None
        try:
            fields = torch.load(entry / FIELDS_FILE, map_location="cpu", weights_only=True)
            for name, described in fields.pop(SPILLED_KEY).items():
                fields[name] = mapped_field(entry, name, described)
            return layout(**fields)
        except Exception:  # a truncated or foreign entry: extract again and replace it
            return None

    def scratch(self) -> SpillDir:
        """A new directory for one extraction to write its arrays into (see `store`); scratch
        directories a crashed extraction left behind are removed first."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.remove_abandoned()
        return SpillDir(Path(tempfile.mkdtemp(prefix="entry-", dir=self.root / "tmp")), keep=True)

    def remove_abandoned(self, older_than_s: float = ABANDONED_AFTER_S) -> None:
        """Remove `tmp/entry-*` directories in which nothing was written for `older_than_s`
        (another process's live extraction appends to its files, which keeps them recent)."""
        now = time.time()
        for scratch in (self.root / "tmp").glob("entry-*"):
            if scratch.is_symlink() or not scratch.is_dir():
                continue
            try:
                latest = max([scratch.stat().st_mtime] + [f.stat().st_mtime for f in scratch.iterdir()])
            except OSError:  # removed meanwhile
                continue
            if now - latest > older_than_s:
                shutil.rmtree(scratch, ignore_errors=True)

    def store(self, key: str, features: object, spill: SpillDir) -> None:
        """Write the small fields beside the spilled arrays, then rename the directory into
        place (an unreadable entry there is moved aside and removed first)."""
        spilled = spilled_fields(features, spill)
        fields = {f.name: getattr(features, f.name) for f in dataclasses.fields(features)
                  if f.name not in spilled}
        torch.save({**fields, SPILLED_KEY: spilled}, spill.path / FIELDS_FILE)
        entry = self.path(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        if entry.exists() or entry.is_symlink():
            stale = self.root / "tmp" / f"stale-{uuid.uuid4().hex[:12]}"
            os.replace(entry, stale)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        try:
            os.replace(spill.path, entry)
        except OSError:  # another process stored the same entry first: keep theirs
            shutil.rmtree(spill.path, ignore_errors=True)

    def get_or_extract(self, key: str, layout: type[T], extract: Callable[[SpillDir], T]) -> T:
        """The stored entry, or `extract(spill)` stored for next time."""
        found = self.load(key, layout)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        spill = self.scratch()
        try:
            features = extract(spill)
            self.store(key, features, spill)
        except BaseException:
            shutil.rmtree(spill.path, ignore_errors=True)
            raise
        return features

    def summary(self) -> str:
        return f"feature cache {self.root}: {self.hits} hit(s), {self.misses} miss(es)"
