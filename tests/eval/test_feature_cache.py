"""The on-disk feature cache: a second run on the same inputs extracts nothing; a changed
checkpoint, transform (normalisation or the probes' geometry) or dataset misses; --no-cache
reads and writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import levl_eval.encoder as encoder_module
from levl_eval.cli import app
from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.datasets import read_imagenet
from levl_eval.datasets.fixtures import write_imagenet_layout
from levl_eval.encoder import FrozenEncoder, load_frozen_checkpoint
from levl_eval.features.cache import FeatureCache, default_cache_dir, entry_key, split_identity
from levl_eval.features.types import SplitFeatures
from levl_eval.geometry import CHECKPOINT, PAPER_PROBE
from levl_eval.runner import EvalOptions, run_evaluation
from levl_eval.testing.worlds import save_micro_checkpoint, write_image


@pytest.fixture
def extractions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every CLS-feature extraction (one forward pass over a split), by split name."""
    calls: list[str] = []
    real = encoder_module.extract_split_features

    def counting(model, split, *args, **kwargs):
        calls.append(split.name)
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(encoder_module, "extract_split_features", counting)
    return calls


def _linear_top1(report: dict) -> list[float]:
    return [enc["protocols"]["linear"]["top1"] for enc in report["encoders"]]


def test_second_run_reuses_features_and_changed_inputs_miss(
    eval_world: Path, micro_run: Path, tmp_path: Path, extractions: list[str]
) -> None:
    options = EvalOptions(protocols=("linear",), batch_size=12, cache_dir=str(tmp_path / "cache"))
    first = run_evaluation([micro_run], eval_world, options)
    assert len(extractions) == 4  # (checkpoint, random) x (eval-train, eval-test)
    assert first["feature_cache"]["misses"] == 4 and first["feature_cache"]["hits"] == 0

    extractions.clear()
    second = run_evaluation([micro_run], eval_world, options)
    assert extractions == []  # no forward pass at all
    assert second["feature_cache"] == {**first["feature_cache"], "hits": 4, "misses": 0}
    assert _linear_top1(second) == _linear_top1(first)

    other = save_micro_checkpoint(tmp_path / "other-weights", seed=2)  # same config: same baseline
    run_evaluation([other], eval_world, options)
    assert len(extractions) == 2  # only the new checkpoint's two splits

    extractions.clear()
    moved = shutil.copytree(micro_run / "checkpoints" / "step_0000007", tmp_path / "other-transform")
    metadata = json.loads((moved / "metadata.json").read_text())
    metadata["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    (moved / "metadata.json").write_text(json.dumps(metadata))
    run_evaluation([moved], eval_world, options)
    assert len(extractions) == 4  # same weights, other normalisation: checkpoint and baseline miss


def test_no_cache_extracts_every_time_and_writes_nothing(
    eval_world: Path, micro_run: Path, tmp_path: Path, extractions: list[str]
) -> None:
    cache = tmp_path / "cache"
    for _ in range(2):
        result = CliRunner().invoke(app, ["linear", "--ckpt", str(micro_run), "--data", str(eval_world),
                                          "--out", str(tmp_path / "out"), "--device", "cpu", "--no-cache"])
        assert result.exit_code == 0, result.output
    assert len(extractions) == 8 and not cache.exists()
    assert "feature cache" not in result.stdout


def test_cli_cache_flag_reports_hits(
    eval_world: Path, micro_run: Path, tmp_path: Path, extractions: list[str]
) -> None:
    args = ["linear", "--ckpt", str(micro_run), "--data", str(eval_world), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--cache", str(tmp_path / "cache")]
    CliRunner().invoke(app, args)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"feature cache {tmp_path / 'cache'}: 4 hit(s), 0 miss(es)" in result.stdout
    assert len(extractions) == 4
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["suite"]["cache_dir"] == report["feature_cache"]["dir"] == str(tmp_path / "cache")
    clash = CliRunner().invoke(app, [*args, "--no-cache"])
    assert clash.exit_code == 2 and clash.stderr.startswith("error: --cache and --no-cache")


def test_a_changed_geometry_misses_and_the_same_geometry_hits(tmp_path: Path, extractions: list[str]) -> None:
    data = read_imagenet(write_imagenet_layout(tmp_path / "datasets", train=1, val=1))
    ckpt, cache = save_micro_checkpoint(tmp_path / "ckpt"), FeatureCache(tmp_path / "cache")

    def fresh() -> FrozenEncoder:  # a new process: nothing memoised, only the disk cache
        encoder = load_frozen_checkpoint(ckpt, device="cpu", batch_size=8)[0]
        encoder.feature_cache = cache
        return encoder

    own = fresh().image_features(data.test)
    paper = fresh().image_features(data.test, PAPER_PROBE)
    assert (cache.hits, cache.misses) == (0, 2) and len(extractions) == 2  # not the 32 px entry
    assert not torch.allclose(own.cls_ND, paper.cls_ND)
    again = fresh().image_features(data.test, PAPER_PROBE)
    assert (cache.hits, cache.misses) == (1, 2) and torch.equal(again.cls_ND, paper.cls_ND)
    # the checkpoint's own geometry keys as before geometries existed: its entries stay valid
    assert torch.equal(fresh().image_features(data.test, CHECKPOINT).cls_ND, own.cls_ND)
    assert (cache.hits, cache.misses) == (2, 2) and len(extractions) == 2
    patches = fresh().patch_features(data.test, PAPER_PROBE)
    assert patches.grid_hw == (14, 14) and cache.misses == 3  # patch tokens: their own entry


def test_default_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEVL_FEATURE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LEVL_FEATURE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "levl" / "features"


def test_a_changed_image_file_or_label_changes_the_key(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", value=10)
    split = EvalSplit("files", files=(FileSample(image, label=0),))
    identity = {"weights": "w"}
    key = entry_key("image", identity, split, SplitFeatures)
    assert entry_key("image", identity, split, SplitFeatures) == key
    assert entry_key("image", identity, EvalSplit("files", files=(FileSample(image, label=1),)),
                     SplitFeatures) != key
    assert entry_key("patches", identity, split, SplitFeatures) != key
    write_image(image, size=(17, 16), value=10)  # new bytes on disk: other size
    assert entry_key("image", identity, split, SplitFeatures) != key
    assert split_identity(split)["name"] == "'files'"


def _stored_split_features(cache: FeatureCache) -> SplitFeatures:
    features = SplitFeatures(torch.ones(2, 3), torch.ones(2, 4), torch.ones(2, 4), torch.tensor([0, 1]),
                             captions=(("a",), ("b",)))
    assert cache.get_or_extract("ab12", SplitFeatures, lambda spill: features) is features
    return features


@pytest.mark.parametrize("damage", ["truncated fields", "foreign file", "entry is a file"])
def test_an_unreadable_entry_is_a_miss_and_is_replaced(tmp_path: Path, damage: str) -> None:
    cache = FeatureCache(tmp_path)
    features = _stored_split_features(cache)
    entry = cache.path("ab12")
    if damage == "truncated fields":
        (entry / "fields.pt").write_bytes((entry / "fields.pt").read_bytes()[:40])
    elif damage == "foreign file":
        (entry / "fields.pt").write_bytes(b"not a torch file")
    else:
        shutil.rmtree(entry)
        entry.write_bytes(b"truncated")
    fresh = FeatureCache(tmp_path)
    got = fresh.get_or_extract("ab12", SplitFeatures, lambda spill: features)
    again = fresh.get_or_extract("ab12", SplitFeatures, lambda spill: pytest.fail("extracted twice"))
    assert (fresh.hits, fresh.misses) == (1, 1) and got is features
    assert torch.equal(again.cls_ND, features.cls_ND) and again.captions == (("a",), ("b",))
    assert sorted(path.name for path in (tmp_path / "tmp").iterdir()) == []  # nothing left behind


def test_a_failed_extraction_leaves_no_entry_and_no_scratch(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)

    def failing(spill):
        (spill.file("tokens_NLD")).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cache.get_or_extract("cd34", SplitFeatures, failing)
    assert not cache.path("cd34").exists() and list((tmp_path / "tmp").iterdir()) == []


def test_an_abandoned_scratch_directory_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    """A crash mid-extraction leaves `tmp/entry-*`; the next extraction removes it once nothing
    was written there for a day, and never touches a recent one (another process's) or other files."""
    import os
    import time

    cache = FeatureCache(tmp_path)
    abandoned, live = tmp_path / "tmp" / "entry-old", tmp_path / "tmp" / "entry-live"
    for scratch in (abandoned, live):
        scratch.mkdir(parents=True)
        (scratch / "tokens_NLD.bin").write_bytes(b"half")
    day_ago = time.time() - 2 * 24 * 3600
    for path in (abandoned / "tokens_NLD.bin", abandoned):
        os.utime(path, (day_ago, day_ago))
    (tmp_path / "tmp" / "notes.txt").write_text("not ours")
    _stored_split_features(cache)
    assert not abandoned.exists() and (live / "tokens_NLD.bin").read_bytes() == b"half"
    assert (tmp_path / "tmp" / "notes.txt").read_text() == "not ours"
