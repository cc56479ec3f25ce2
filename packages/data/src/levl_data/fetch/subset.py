"""DataComp uid subsets: the `.npy` files that name which pool samples a filter kept.

The format is DataComp's own (its resharder reads the same files): a 1-D numpy structured array
of dtype `u8,u8`, each uid's 128 bits as two big-endian halves, sorted so membership is a
binary search. A uid is 32 hex digits in the metadata: (int(hex[:16], 16), int(hex[16:], 16)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from levl_data.errors import DataError

UID_DTYPE = np.dtype("u8,u8")


def load_uid_subset(path: Path) -> np.ndarray:
    """Load and check a subset file; returns it sorted (DataComp writes them sorted)."""
    try:
        uids = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"subset {path}: not a readable .npy file ({err})") from None
    if uids.dtype != UID_DTYPE or uids.ndim != 1:
        raise DataError(
            f"subset {path}: dtype {uids.dtype} shape {uids.shape}, expected a 1-D array of "
            "dtype u8,u8 (DataComp uid halves); build it with levl_data.fetch.subset.uid_pairs"
        )
    if uids.size > 1 and not _is_sorted(uids):
        uids = np.sort(uids)
    return uids


def uid_pairs(hex_uids: list[str], where: str = "uids") -> np.ndarray:
    """32-hex-digit uids -> the u8,u8 structured array (vectorized: pools have 10^9 rows)."""
    if any(uid is None or len(uid) != 32 for uid in hex_uids):
        bad = next(uid for uid in hex_uids if uid is None or len(uid) != 32)
        raise DataError(f"{where}: uid {bad!r} is not 32 hex digits (DataComp uids are 128-bit)")
    try:
        raw = bytes.fromhex("".join(hex_uids))
    except ValueError:
        raise DataError(f"{where}: a uid holds a non-hex character") from None
    halves = np.frombuffer(raw, dtype=">u8").reshape(-1, 2)
    pairs = np.empty(len(hex_uids), dtype=UID_DTYPE)
    pairs["f0"], pairs["f1"] = halves[:, 0], halves[:, 1]
    return pairs


def in_subset(pairs: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Boolean mask of which `pairs` are in the sorted `subset`."""
    if subset.size == 0 or pairs.size == 0:
        return np.zeros(pairs.size, dtype=bool)
    index = np.minimum(np.searchsorted(subset, pairs), subset.size - 1)
    return subset[index] == pairs


def _is_sorted(uids: np.ndarray) -> bool:
    first, second = uids["f0"], uids["f1"]
    increasing = (first[1:] > first[:-1]) | (
        (first[1:] == first[:-1]) & (second[1:] >= second[:-1])
    )
    return bool(increasing.all())
