"""File-header checks shared by the folder-dataset readers (no pixel is decoded)."""

from __future__ import annotations

from pathlib import Path

import PIL.Image

from levl_eval.errors import EvalDataError


def image_header(path: Path) -> tuple[tuple[int, int], str]:
    """((width, height), PIL mode) from the file header, or a one-line error naming the file."""
    try:
        with PIL.Image.open(path) as opened:
            return opened.size, opened.mode
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
        raise EvalDataError(f"{path}: unreadable image ({type(exc).__name__}); replace the file") from None
