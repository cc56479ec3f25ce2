"""What a fetch may vary: img2dataset's knobs that matter at scale and the stored-image policy.

Kept apart from the pipeline (which imports webdataset and torch, ~3 s) so the CLI takes its
option defaults from here at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from levl_data.fetch.distributors import check_distributor

RESIZE_MODES = ("keep_ratio", "center_crop", "border", "keep_ratio_largest", "no")
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")


@dataclass(frozen=True)
class FetchOptions:
    """img2dataset settings. `image`-affecting ones are part of a fetch's identity."""

    image_size: int = 256
    resize_mode: str = "keep_ratio"
    max_pixels: int = 89_478_485  # PIL's own decompression-bomb threshold
    blur_faces: bool = True
    samples_per_shard: int = 10_000
    processes: int = 16
    threads: int = 64
    retries: int = 0
    timeout: float = 10.0
    distributor: str = "multiprocessing"

    def validate(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"--resize-mode must be one of {', '.join(RESIZE_MODES)}")
        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"--distributor must be one of {', '.join(DISTRIBUTORS)}")
        for name in ("image_size", "max_pixels", "samples_per_shard", "processes", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.retries < 0 or self.timeout <= 0:
            raise ValueError("--retries must be >= 0 and --timeout > 0")
        check_distributor(self.distributor)

    def image_identity(self) -> dict:
        """The options that change stored bytes (a resume must not mix two of these)."""
        keys = ("image_size", "resize_mode", "max_pixels", "blur_faces", "samples_per_shard")
        return {key: value for key, value in asdict(self).items() if key in keys}
