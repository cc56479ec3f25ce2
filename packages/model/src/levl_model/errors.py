"""Exceptions of levl_model: one base class so CLIs can catch every user-facing model failure."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every levl_model failure a user can fix; the message is one line."""


class ConfigError(ModelError):
    """A model/objective/preprocess config has an unknown key or a bad value."""


class CheckpointError(ModelError):
    """A checkpoint is missing, of another schema, or does not match its own metadata."""
