"""User-facing training errors: one line naming the thing and the fix."""

from __future__ import annotations


class TrainError(Exception):
    """A bad recipe, override, run directory or device request."""
