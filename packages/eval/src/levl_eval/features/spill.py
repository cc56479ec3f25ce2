"""Per-image arrays too large for RAM, written to disk as they are produced and read back
memory-mapped.

COCO-Stuff's 118k training images give 118k x 196 x 768 patch tokens (35 GB in float16),
ImageNet's attentive probe more, and even its CLS features are 3.9 GB per float32 array:
`levl_eval.features.extract` appends each batch to a raw file here instead of keeping a list to
concatenate, and the protocols index the mapped tensor a batch at a time, so the pages they
read are file-backed (the kernel drops them under memory pressure) and a process's own memory
stays the size of a batch. A map is private copy-on-write
(`torch.from_file(shared=False)`): a protocol that writes into a tensor changes its copy, never
the file.

Label maps of different sizes (each test image's frame at its original resolution) are stored
flattened end to end, as `RaggedMaps`.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


def array_file(directory: Path, name: str) -> Path:
    """Where a spilled field's raw array lives in its directory (a spill or a cache entry)."""
    return directory / f"{name}.bin"


def map_array(path: Path, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """The raw file at `path` as a [shape] tensor of `dtype`, mapped, not read."""
    count = math.prod(shape)
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    return torch.from_file(str(path), shared=False, size=count, dtype=dtype).view(shape)


def array_bytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


class ArrayWriter:
    """Rows of one dtype and one trailing shape, appended to a raw file batch by batch."""

    def __init__(self, path: Path, dtype: torch.dtype | None = None) -> None:
        self.path, self.dtype = Path(path), dtype  # None: the first batch's own dtype
        self.row_shape: tuple[int, ...] | None = None
        self.rows = 0
        self.file = open(self.path, "wb")  # noqa: SIM115 - closed by finish()

    def append(self, rows: torch.Tensor) -> None:
        """Write rows [B, *row_shape]; every batch must share the first one's row shape."""
        row_shape = tuple(rows.shape[1:])
        if self.row_shape is None:
            self.row_shape, self.dtype = row_shape, self.dtype or rows.dtype
        elif row_shape != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {row_shape} after {self.row_shape}")
        self.file.write(rows.detach().to(self.dtype).contiguous().cpu().view(torch.uint8).numpy())
        self.rows += int(rows.shape[0])

    def finish(self, empty_row_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Close the file and map it as [rows, *row_shape] (`empty_row_shape` when none came)."""
        self.file.close()
        shape = (self.rows, *(self.row_shape if self.row_shape is not None else empty_row_shape))
        return map_array(self.path, self.dtype or torch.uint8, shape)


@dataclass(frozen=True)
class RaggedMaps(Sequence[torch.Tensor]):
    """Maps of different [H_i, W_i] sizes, flattened end to end in one (mapped) tensor."""

    values_P: torch.Tensor
    shapes: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        ends = [0]
        for height, width in self.shapes:
            ends.append(ends[-1] + height * width)
        if ends[-1] != self.values_P.numel():
            raise ValueError(f"{len(self.shapes)} maps hold {ends[-1]} values, not {self.values_P.numel()}")
        object.__setattr__(self, "_ends", ends)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        start, end = self._ends[index], self._ends[index + 1]
        return self.values_P[start:end].view(self.shapes[index])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[index] for index in range(len(self)))


class RaggedWriter:
    """Maps of any [H, W] size appended one at a time, for `RaggedMaps`."""

    def __init__(self, path: Path, dtype: torch.dtype | None = None) -> None:
        self.values = ArrayWriter(path, dtype)
        self.shapes: list[tuple[int, int]] = []

    def append(self, maps: Sequence[torch.Tensor]) -> None:
        for map_HW in maps:
            self.values.append(map_HW.reshape(-1))
            self.shapes.append((int(map_HW.shape[0]), int(map_HW.shape[1])))

    def finish(self) -> RaggedMaps:
        return RaggedMaps(self.values.finish(), tuple(self.shapes))


@dataclass
class SpillDir:
    """Where one extraction writes its arrays: a feature-cache entry being built (kept), or a
    private temporary directory whose files are unlinked once mapped (`release`: the maps stay
    valid and the disk space returns when they are freed)."""

    path: Path
    keep: bool

    @classmethod
    def temporary(cls) -> SpillDir:
        """$LEVL_SPILL_DIR, else the system's temporary directory (see docs: not a tmpfs)."""
        where = os.environ.get("LEVL_SPILL_DIR") or None
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="levl-spill-", dir=where)), keep=False)

    def file(self, name: str) -> Path:
        return array_file(self.path, name)

    def release(self) -> None:
        """Remove a temporary directory (its mapped arrays stay readable); keep a cache entry's."""
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def fix_mmap_threshold(threshold: int = 2**20) -> bool:
    """Serve allocations of `threshold` bytes or more with their own mmap, returned to the
    system when freed; whether it was set (glibc only; the user's MALLOC_MMAP_THRESHOLD_ wins).

    glibc raises the threshold each time such a block is freed (up to 32 MB), after which a
    head's per-batch copies of mapped tokens (10-20 MB each) come from the heap, which
    fragments and keeps growing: linear segmentation over 6000 images of ViT-S tokens kept
    780 MB it no longer used (bench/eval_memory.py). A fixed threshold keeps a process's own
    memory at a batch's size."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, macOS): nothing to fix
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
