"""User-facing errors of levl_data.

Every message is one line that names the thing (a manifest, a shard, an option) and says how to
fix it, because the CLIs print it verbatim as `error: <message>` without a traceback.
"""

from __future__ import annotations


class DataError(Exception):
    """Base class of every error levl_data raises on purpose (bad input, not a bug)."""


class ManifestError(DataError):
    """A manifest that cannot be trusted: unreadable, invalid, or not matching its shards."""
