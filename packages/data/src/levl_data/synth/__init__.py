"""The synthetic image-caption world (`levl-data synth`): procedurally generated scenes of
coloured shapes on textured backgrounds, with captions, masks, background variants and QA.

`write_world(out_dir, size, seed)` writes train / eval-train / eval-test shard sets; the other
modules are the pure pieces it is built from (vocab, scene, render, captions, qa, sample).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SIZES", "SPLITS", "WORLD_VERSION", "write_world"]


def __getattr__(name: str) -> Any:
    """Import `world` lazily: it pulls in the writer (webdataset, torch), which the pure
    generation modules and the worker processes do not need."""
    if name in __all__:
        from levl_data.synth import world

        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
