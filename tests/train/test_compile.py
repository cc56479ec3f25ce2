"""`dist.compile`: the towers compiled in place train the golden micro run to the same losses as
eager, and the checkpoint and resume see the same parameter names.

The tests compile with the "aot_eager" backend (the private `_COMPILE_BACKEND` hook): the same
dynamo-traced forward and AOT-autograd backward as inductor, without inductor's C++ build, which
takes ~1 min for the micro towers on a 2-core CPU. A run uses inductor.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.testing import CompileCounterWithBackend

import levl_train.engine
from levl_model.jsontext import parse_json
from levl_train.config import TrainConfig, apply_overrides, check_config, config_from_dict
from levl_train.errors import TrainError
from levl_train.golden import STEPS, TERMS, golden_losses
from levl_train.loop import resume
from levl_train.recipes import micro_synthetic

FINAL = f"checkpoints/step_{STEPS:07d}/model.safetensors"


@pytest.fixture
def counted_compile(monkeypatch):
    """Compile with aot_eager through a counter of the frames dynamo hands the backend."""
    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(levl_train.engine, "_COMPILE_BACKEND", counter)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch._dynamo.reset()
    yield counter
    torch._dynamo.reset()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def graphs(counter: CompileCounterWithBackend) -> int:
    """Graphs the backend compiled, less the empty one dynamo hands it for a module's call
    frame (torch 2.14)."""
    return sum(1 for graph in counter.graphs if len(graph.graph.nodes))


def compiled(cfg: TrainConfig) -> TrainConfig:
    """compile on, with a checkpoint halfway through the golden run to resume from."""
    return dataclasses.replace(cfg, dist=dataclasses.replace(cfg.dist, compile=True),
                               ckpt_every=STEPS // 2)


def test_compiled_towers_keep_the_losses_checkpoint_names_and_resume(
        tmp_path, counted_compile):
    """The golden micro run (float64, deterministic) eager and compiled, in the same test, so
    the comparison does not hang on the stored curve."""
    eager = golden_losses(tmp_path / "eager")
    assert counted_compile.frame_count == 0
    losses = golden_losses(tmp_path / "compiled", change=compiled)
    assert graphs(counted_compile) == 2  # each tower once, whatever the caption lengths
    for term in TERMS:
        np.testing.assert_allclose(losses[term], eager[term], rtol=1e-9, atol=1e-12,
                                   err_msg=term)
    run = tmp_path / "compiled" / "run"
    weights = load_file(run / FINAL)
    assert weights.keys() == load_file(tmp_path / "eager" / "run" / FINAL).keys()
    (run / "latest").write_text(f"checkpoints/step_{STEPS // 2:07d}\n")  # killed halfway
    resume(run)
    resumed = load_file(run / FINAL)
    assert [key for key in weights if not torch.equal(weights[key], resumed[key])] == []


def test_compile_is_off_by_default_and_a_bad_value_is_one_error():
    assert micro_synthetic().dist.compile is False
    with pytest.raises(TrainError, match="expected bool"):
        apply_overrides(micro_synthetic(), ["dist.compile=maybe"])
    saved = micro_synthetic().to_dict()
    saved["dist"]["compile"] = "yes"
    with pytest.raises(TrainError, match="^dist.compile='yes' must be true or false$"):
        check_config(config_from_dict(saved))


def with_local_views(cfg: TrainConfig) -> TrainConfig:
    """LeVLJEPA+'s views on the golden run: two 64-px global views and four 32-px local crops,
    so the compiled ViT sees two input sizes every step."""
    data = dataclasses.replace(cfg.data, views=2, local_views=4, local_size=32)
    objective = dataclasses.replace(cfg.objective, lambda_multi=1.0)
    return dataclasses.replace(cfg, data=data, objective=objective)


def test_compiled_towers_with_local_views_keep_the_losses(tmp_path, counted_compile):
    """The ViT compiled once per input size, not once per step, and the losses (the multi-view
    term too) stay eager's."""
    eager = golden_losses(tmp_path / "eager", change=with_local_views)
    assert counted_compile.frame_count == 0
    losses = golden_losses(tmp_path / "compiled",
                           change=lambda cfg: compiled(with_local_views(cfg)))
    # Per input size, not per step: three graphs, the ViT at 64 px and at 32 px (the local
    # crops) and the text tower once, for any caption length (compiled dynamic; a static first
    # compile added a fourth). Recompiling every step would give ~40.
    assert graphs(counted_compile) == 3
    for term in TERMS:
        np.testing.assert_allclose(losses[term], eager[term], rtol=1e-9, atol=1e-12,
                                   err_msg=term)
    multi = [[parse_json(line)["multi"] for line in (tmp_path / run / "run" / "metrics.jsonl")
              .open()] for run in ("eager", "compiled")]
    np.testing.assert_allclose(multi[1], multi[0], rtol=1e-9, atol=1e-12)
