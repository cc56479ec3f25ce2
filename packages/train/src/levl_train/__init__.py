"""levl train package."""

__version__ = "0.1.0"
