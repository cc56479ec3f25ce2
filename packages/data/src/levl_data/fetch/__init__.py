"""Fetch web-scale image-caption corpora (CC12M, DataComp-L) into levl.shards/v1 shard sets."""

from levl_data.fetch.img2dataset_run import FetchOptions
from levl_data.fetch.pipeline import FetchRequest, FetchResult, fetch

__all__ = ["FetchOptions", "FetchRequest", "FetchResult", "fetch"]
