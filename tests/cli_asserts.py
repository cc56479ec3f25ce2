"""Assertions on a finished console-script run, shared by the CLI tests (`pythonpath = tests`)."""

from __future__ import annotations

import subprocess


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The contract for bad input: exit code 2 and exactly one stderr line, `error: ...`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def error_line_among_progress(output: str) -> str:
    """A run that failed mid-training shares its output with the progress bar (`\\r`-separated
    updates): exactly one `error: ...` line among them, which is returned."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]
