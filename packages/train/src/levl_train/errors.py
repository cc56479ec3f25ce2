"""User-facing training errors: one line naming the thing and the fix."""

from __future__ import annotations


class TrainError(Exception):
    """A bad recipe, override, run directory or device request."""


class PeerFailed(TrainError):
    """Another rank failed first and this one stopped with it; the message is that rank's.
    Rank 0 prints it the moment it learns it (`failures.stop_together`), before the failing
    rank leaves and a launcher may kill the rest, so the CLI does not print it again."""
