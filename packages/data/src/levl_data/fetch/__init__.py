"""Fetch web-scale image-caption corpora (CC12M, DataComp-L) into levl.shards/v1 shard sets."""

from levl_data.fetch.options import FetchOptions

__all__ = ["FetchOptions", "FetchRequest", "FetchResult", "fetch"]
_PIPELINE = {"FetchRequest", "FetchResult", "fetch"}


def __getattr__(name: str):
    """The pipeline imports webdataset and torch (~3 s): loaded on first use, so the CLI's
    start-up and `--help` read FetchOptions without paying for it."""
    if name in _PIPELINE:
        from levl_data.fetch import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
