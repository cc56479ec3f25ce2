"""Shared fixtures: one tiny labelled eval world and two micro checkpoints per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from levl_eval.testing.worlds import save_micro_checkpoint, write_eval_world, write_synth_eval_world


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Micro models: a second intra-op thread buys little and collapses when another job shares
    the 2 cores. `pytest tests/eval` measured (2026-11-23): idle machine 40-48 s with one thread
    vs 38-41 s with two; beside two busy processes 88 s vs 190 s; under another suite's load the bridge test alone took
    10 s vs 89 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
