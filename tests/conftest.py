"""Shared fixtures: the console scripts of the installed packages, run as a user runs them."""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

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


# The console scripts' entry points, for running them in this process (`run_main`): a test that
# needs only the `error:` line and the exit code would otherwise pay torch's import (~8 s on
# the 2-core CI machine) in a subprocess per case.
ENTRY_POINTS = {"levl-data": "levl_data.cli", "levl-train": "levl_train.cli",
                "levl-eval": "levl_eval.cli"}


@pytest.fixture
def run_main(capsys, monkeypatch):
    """`run_main(tool, *args)` calls the tool's console-script `main()` with that argv and
    returns (returncode, stdout, stderr) like subprocess.run, for cli_asserts.one_error_line.
    An exception that escapes `main()` (the traceback a user would see) fails the test."""

    def run(tool: str, *args: object) -> SimpleNamespace:
        main = importlib.import_module(ENTRY_POINTS[tool]).main
        monkeypatch.setattr(sys, "argv", [tool, *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@pytest.fixture
def collect_ffcv_loaders():
    """numba's dispatcher finalizer raises KeyError when an ffcv Loader's compiled code is
    collected (ffcv + numba 0.68); run those finalizers right after the test that made the
    loaders, not at a random later allocation (one inside an `ast.parse`, as pytest imports a
    module, ends in a SystemError that stops the whole run). A dropped stream's ffcv epoch
    stops its prefetch thread once collected; the loaders die with the thread."""
    yield
    gc.collect()
    for thread in threading.enumerate():
        if type(thread).__name__ == "EpochIterator":
            thread.join(timeout=10)
    gc.collect()
