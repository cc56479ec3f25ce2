"""Shared fixtures: one tiny labelled eval world and two micro checkpoints per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from levl_eval.testing import save_micro_checkpoint, write_eval_world, write_synth_eval_world


@pytest.fixture(autouse=True)
def private_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """levl-eval's default feature cache lives in ~/.cache: each test gets its own instead."""
    monkeypatch.setenv("LEVL_FEATURE_CACHE", str(tmp_path_factory.mktemp("feature-cache")))


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_eval_world(tmp_path_factory.mktemp("world") / "synth")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir whose `latest` names a micro checkpoint (trained weights = seed 1 init)."""
    run = tmp_path_factory.mktemp("runs") / "micro-run"
    save_micro_checkpoint(run / "checkpoints" / "step_0000007", seed=1, step=7)
    (run / "latest").write_text("checkpoints/step_0000007\n")
    return run


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """eval-train/eval-test from the real world generator: masks, background variants, captions."""
    return write_synth_eval_world(tmp_path_factory.mktemp("synth") / "world", per_split=32)
