"""JSON parsed from files: every malformed document is a json.JSONDecodeError.

The stdlib parser recurses once per nesting level, so a file of 100000 `[` raises
RecursionError, which no `except json.JSONDecodeError` catches and which would reach the user
as a traceback. levl_model, levl_train and levl_eval parse the JSON files they are given (run
dirs, checkpoints, reports, datasets; not their own package data) only through `parse_json`;
levl_data, which imports no other levl package, has its own twin.
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
