"""Shared fixtures: the console scripts of the installed packages, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run_cli(tool: str, *args: str, cwd: Path | None = None, timeout: int = 600,
            env: dict[str, str] | None = None):
    """Run `tool args...` (a levl console script) and return the CompletedProcess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


@pytest.fixture
def cli():
    return run_cli
