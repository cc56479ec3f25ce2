"""levl_eval's user-facing errors.

Every message is one line naming the thing and the fix; the CLI prints it as `error: <message>`
and exits 2 (the traceback only with --debug).
"""

from __future__ import annotations


class EvalError(Exception):
    """Base of every error levl-eval reports to a user."""


class EvalDataError(EvalError):
    """An evaluation data directory or its manifests cannot be used (missing split, labels)."""


class DeviceError(EvalError):
    """The requested device does not exist on this machine."""


class OutputError(EvalError):
    """The output directory cannot be written without clobbering something."""


class DatasetNotFound(EvalDataError):
    """A dataset's standard directory is absent: `levl-eval all` skips its protocol and says so."""

    def __init__(self, path: object) -> None:
        super().__init__(f"not found at {path}")
        self.path = path
