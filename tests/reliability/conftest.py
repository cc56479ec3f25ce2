"""The console scripts' entry points run in this process: the bad-input tests need only the
`error:` line and the exit code, and a subprocess would pay torch's import (~8 s on the 2-core
CI machine) once per case."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest

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


@pytest.fixture(autouse=True)
def private_feature_cache(tmp_path_factory, monkeypatch) -> None:
    """levl-eval's default feature cache lives in ~/.cache: each test gets its own instead."""
    monkeypatch.setenv("LEVL_FEATURE_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
