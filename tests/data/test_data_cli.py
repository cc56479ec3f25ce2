"""levl-data CLI: verify/info/synth output, exit codes, and the single `error:` line."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from levl_data.cli import app
from levl_data.errors import DataError, ManifestError
from levl_data.testing import make_tiny_shards

runner = CliRunner()


def _corrupt(shard: Path) -> None:
    content = bytearray(shard.read_bytes())
    content[700] ^= 0xFF
    shard.write_bytes(bytes(content))


def test_verify_ok_prints_one_summary_line(tiny_manifest: Path):
    result = runner.invoke(app, ["verify", str(tiny_manifest), "--decode", "16"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"OK {tiny_manifest}: 16 samples in 2 shards")
    assert "16 images decoded" in line


def test_verify_reports_a_corrupted_shard_and_exits_1(tmp_path: Path):
    path = make_tiny_shards(tmp_path / "set", n=16)
    _corrupt(path.parent / "shard-000001.tar")
    result = runner.invoke(app, ["verify", str(path.parent), "--decode", "0"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines and all("shard-000001.tar" in line for line in lines)
    assert any("sha256" in line for line in lines)


def test_verify_decode_reports_each_undecodable_image(tmp_path: Path):
    path = make_tiny_shards(tmp_path / "set", n=16, bad=2)
    result = runner.invoke(app, ["verify", str(path), "--decode", "16"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "sample 000000: undecodable image" in lines[0]
    assert "sample 000008: undecodable image" in lines[1]


def test_missing_manifest_prints_one_error_line_and_exits_2(tmp_path: Path):
    result = runner.invoke(app, ["verify", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: manifest {tmp_path / 'nope.json'}: no such file")


def test_debug_reraises_the_error(tmp_path: Path):
    result = runner.invoke(app, ["--debug", "info", str(tmp_path / "nope.json")])
    assert isinstance(result.exception, ManifestError)


def test_bad_option_value_is_a_one_line_error(tiny_manifest: Path):
    result = runner.invoke(app, ["verify", str(tiny_manifest), "--decode", "-1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --decode must be >= 0, got -1"


def test_info_prints_the_summary(tiny_manifest: Path):
    result = runner.invoke(app, ["info", str(tiny_manifest)])
    assert result.exit_code == 0, result.output
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["name"].strip() == "levl-testing-tiny"
    assert fields["samples"].strip() == "16"
    assert fields["shards"].strip() == "2"
    assert fields["labels"].strip() == "classes=8, prompts=2"


def test_info_json_is_machine_readable(tiny_manifest: Path):
    result = runner.invoke(app, ["info", str(tiny_manifest), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = json.loads(tiny_manifest.read_text())
    assert summary["fingerprint"] == manifest["fingerprint"]
    assert summary["bytes"] == sum(shard["bytes"] for shard in manifest["shards"])
    assert summary["stats"] == manifest["stats"]
    assert summary["labels"] == {"classes": 8, "prompts": 2}


def test_synth_prints_each_split_manifest_and_count(tmp_path, monkeypatch):
    calls = []

    def write_world(out_dir: Path, size: str, seed: int) -> dict[str, Path]:
        calls.append((Path(out_dir), size, seed))
        if size not in {"micro", "tiny"}:
            raise DataError(f"synth size {size!r} is unknown")
        return {
            split: make_tiny_shards(Path(out_dir) / split, n=n)
            for split, n in [("train", 16), ("eval-train", 8), ("eval-test", 8)]
        }

    fake = types.ModuleType("levl_data.synth")
    fake.write_world = write_world
    monkeypatch.setitem(sys.modules, "levl_data.synth", fake)
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--size", "micro", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path, "micro", 3)]
    assert result.stdout.splitlines() == [
        f"train\t{tmp_path / 'train' / 'manifest.json'}\t16 samples",
        f"eval-train\t{tmp_path / 'eval-train' / 'manifest.json'}\t8 samples",
        f"eval-test\t{tmp_path / 'eval-test' / 'manifest.json'}\t8 samples",
    ]
    bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--size", "huge"])
    assert bad.exit_code == 2 and bad.stderr == "error: synth size 'huge' is unknown\n"


def test_console_script_exits_2_without_traceback(tmp_path: Path):
    script = Path(sys.executable).parent / "levl-data"
    assert script.exists(), "levl-data console script not installed in this venv"
    bad = tmp_path / "manifest.json"
    bad.write_text('{"schema": "levl.shards/v9"}')
    done = subprocess.run([str(script), "info", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        f'error: manifest {bad}: unknown schema "levl.shards/v9" (this levl-data reads '
        "levl.shards/v1)\n"
    )
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("args", [[], ["--help"]])
def test_help_lists_the_commands(args):
    result = runner.invoke(app, args)
    for command in ("verify", "info", "synth"):
        assert command in result.output
