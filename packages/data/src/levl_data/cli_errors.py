"""The CLI's one rule for user errors: one `error:` line on stderr and exit 2 (or, with the
root's `--debug`, the traceback). Shared by every levl-data command module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from levl_data.errors import DataError


@contextmanager
def user_errors(ctx: typer.Context) -> Iterator[None]:
    """Turn DataError/ValueError into `error: ...` + exit 2, unless the root got --debug."""
    try:
        yield
    except (DataError, ValueError) as err:
        if ctx.find_root().params.get("debug"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
