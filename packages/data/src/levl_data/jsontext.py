"""JSON parsed from files and shard members: every malformed document is a JSONDecodeError.

The stdlib parser recurses once per nesting level, so a document of 100000 `[` raises
RecursionError, which no `except json.JSONDecodeError` catches: one such sample or manifest
would crash a loader or a CLI with a traceback. levl_data parses the JSON it is given (shard
members, manifests, fetch work files; not its own package data) only here. levl_model has the
twin the other packages use: levl_data may import no other levl package.
"""

from __future__ import annotations

import json
from typing import Any

TOO_DEEP = "nested deeper than Python's recursion limit allows"


def parse_json(text: str | bytes) -> Any:
    """json.loads, with too-deep nesting raised as json.JSONDecodeError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        error = json.JSONDecodeError(TOO_DEEP, "", 0)
        error.args = (TOO_DEEP,)  # no "line 1 column 1 (char 0)": the depth has no one position
        raise error from None
