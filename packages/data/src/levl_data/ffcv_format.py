"""What a levl ffcv dataset is: one `.beton` file with fixed field names, next to its manifest.

ffcv is an optional extra (`levl-data[ffcv]`): it builds against Debian's libturbojpeg and
OpenCV and pulls numba, which a webdataset-only user should not pay for. Everything that needs
it imports it through `import_ffcv`, so a missing install is one clear line, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from levl_data.errors import DataError
from levl_data.shardscan import ShardScan, hash_file

BETON_NAME = "data.beton"
# Field order is the order the ffcv Loader yields them in.
FIELDS = ("image", "caption", "key", "json")
MEMBERS = {"image": "image", "caption": "caption", "json": "json"}
INSTALL_HINT = (
    "install it with `pip install 'levl-data[ffcv]'` (it builds against Debian's "
    "libturbojpeg0-dev libopencv-dev pkg-config: `apt-get install -y --no-install-recommends "
    "libturbojpeg0-dev libopencv-dev pkg-config`)"
)


def import_ffcv() -> ModuleType:
    """The ffcv package, or a DataError saying how to install it."""
    try:
        import ffcv
        import ffcv.fields  # noqa: F401 — imports cv2 and the compiled libffcv
        import ffcv.loader  # noqa: F401
    except ImportError as err:
        raise DataError(
            f"ffcv is not installed or does not import ({err}); {INSTALL_HINT}"
        ) from None
    return ffcv


def beton_num_samples(path: Path) -> int:
    """The sample count in a `.beton` header (ffcv's own header type, no data read)."""
    import_ffcv()
    import numpy as np
    from ffcv.types import HeaderType

    with open(path, "rb") as handle:
        raw = handle.read(HeaderType.itemsize)
    if len(raw) < HeaderType.itemsize:
        raise DataError(f"ffcv file {path}: shorter than an ffcv header (truncated or replaced)")
    return int(np.frombuffer(raw, dtype=HeaderType)[0]["num_samples"])


def scan_beton(path: Path) -> ShardScan:
    """sha256, bytes and header sample count of a `.beton`, the tar scan's counterpart."""
    size, digest = hash_file(path)
    try:
        return ShardScan(size, digest, beton_num_samples(path))
    except (DataError, ValueError) as exc:
        return ShardScan(size, digest, 0, f"{type(exc).__name__}: {exc}")
