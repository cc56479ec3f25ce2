"""JSON nested deeper than Python's recursion limit (100000 `[`) is bad input like any other bad
JSON: the stdlib parser raises RecursionError on it, which no `except JSONDecodeError` caught.
A shard's per-sample JSON is skipped and counted as `undecodable_json`; a manifest, report,
run config or checkpoint metadata file is one `error:` line naming it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from cli_asserts import one_error_line

from levl_data.convert import locate_samples
from levl_data.jsontext import parse_json as parse_data_json
from levl_data.loader import build_loader
from levl_data.manifest import read_manifest
from levl_data.testing import _jpeg, make_tiny_shards
from levl_data.writer import ShardSetWriter
from levl_eval.testing.worlds import save_micro_checkpoint, write_eval_world
from levl_model.checkpoint import METADATA_FILE, read_metadata
from levl_model.errors import CheckpointError
from levl_model.jsontext import parse_json as parse_model_json

DEEP = "[" * 100_000
N, DEEP_INDEX = 6, 2


@pytest.mark.parametrize("parse", [parse_data_json, parse_model_json])
def test_deep_nesting_is_a_json_decode_error(parse):
    with pytest.raises(json.JSONDecodeError, match="nested deeper than Python's recursion limit"):
        parse(DEEP)
    with pytest.raises(json.JSONDecodeError):
        parse(DEEP.encode())
    assert parse('{"a": [1]}') == {"a": [1]}


@pytest.fixture(scope="module")
def deep_sample_shards(tmp_path_factory) -> Path:
    """N samples; sample DEEP_INDEX's `.json` member is 100000 `[`."""
    with ShardSetWriter(tmp_path_factory.mktemp("deep") / "shards") as writer:
        for index in range(N):
            meta = DEEP.encode() if index == DEEP_INDEX else {"label": index}
            writer.write({"__key__": f"{index:06d}", "jpg": _jpeg("red", "square", 16),
                          "txt": "a red square", "json": meta})
        return writer.finish(
            name="deep-json", split="train",
            source={"kind": "synthetic", "metadata": [], "subset": {"rule": "all", "sha256": None},
                    "params": {}},
            image={"policy": "fixed", "size": 16, "encoding": "jpeg"},
        )


def test_loader_skips_and_counts_a_deeply_nested_sample_json(deep_sample_shards):
    loader = build_loader(deep_sample_shards, batch_size=N, shuffle_buffer=0, drop_last=False,
                          max_failure_rate=0.5, image_transform=lambda image: torch.zeros(1))
    keys, skipped = [], Counter()
    for batch in loader:
        keys += batch["key"]
        skipped.update(batch["skipped"])
    assert keys == [f"{i:06d}" for i in range(N) if i != DEEP_INDEX]
    assert skipped == Counter({"undecodable_json": 1})


def test_convert_skips_and_counts_a_deeply_nested_sample_json(deep_sample_shards):
    located, failures = locate_samples(read_manifest(deep_sample_shards))
    assert [sample.key for sample in located] == [f"{i:06d}" for i in range(N) if i != DEEP_INDEX]
    assert failures == Counter({"undecodable_json": 1})


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(a labelled eval world, a micro checkpoint) for levl-eval."""
    root = tmp_path_factory.mktemp("eval")
    return write_eval_world(root / "world"), save_micro_checkpoint(root / "ckpt")


def _deep_manifest(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(DEEP)
    return directory / "manifest.json"


@pytest.mark.parametrize("tool", ["info", "verify", "convert", "train", "eval"])
def test_a_deeply_nested_manifest_is_one_error_line_from_every_tool(run_main, eval_inputs,
                                                                     tmp_path, tool):
    world, ckpt = eval_inputs
    if tool == "eval":
        data = tmp_path / "world"
        shutil.copytree(world, data)
        manifest = _deep_manifest(data / "eval-test")
    else:
        manifest = _deep_manifest(tmp_path / "shards")
    out = tmp_path / "out"
    argv = {
        "info": ("levl-data", "info", manifest),
        "verify": ("levl-data", "verify", manifest),
        "convert": ("levl-data", "convert", manifest, "--to", "ffcv", "--out", out),
        "train": ("levl-train", "run", "micro_synthetic", "--data", manifest, "--out", out,
                  "--set", "device=cpu"),
        "eval": ("levl-eval", "zeroshot", "--ckpt", ckpt, "--data", tmp_path / "world",
                 "--out", out, "--device", "cpu"),
    }[tool]
    line = one_error_line(run_main(*argv))
    assert str(manifest) in line and "nested deeper than Python's recursion limit" in line, line
    assert not out.exists()


def test_a_deeply_nested_checkpoint_metadata_is_a_checkpoint_error(eval_inputs, tmp_path):
    ckpt = shutil.copytree(eval_inputs[1], tmp_path / "ckpt")
    (ckpt / METADATA_FILE).write_text(DEEP)
    with pytest.raises(CheckpointError, match=r"metadata\.json: unreadable JSON"):
        read_metadata(ckpt)


def test_a_deeply_nested_report_is_one_error_line(run_main, tmp_path):
    (tmp_path / "report.json").write_text(DEEP)
    line = one_error_line(run_main("levl-eval", "report", tmp_path))
    assert "report.json: not valid JSON" in line and "recursion limit" in line, line
    assert not (tmp_path / "report.md").exists()


def test_a_deeply_nested_run_config_is_one_error_line(run_main, tmp_path):
    shards = make_tiny_shards(tmp_path / "shards", n=8)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(DEEP)
    for argv in (("resume", run), ("run", "micro_synthetic", "--data", shards, "--out", run)):
        line = one_error_line(run_main("levl-train", *argv))
        assert f"{run / 'config.json'}: not valid JSON" in line, line
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]
