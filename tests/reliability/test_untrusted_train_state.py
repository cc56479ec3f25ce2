"""A run dir copied from elsewhere is untrusted: resuming it must not run code hidden in its
pickles. Each test plants a pickle whose unpickling would create a marker file, shows that a
plain `torch.load` does run it, and that `levl-train resume` refuses the file with one
`error:` line and the marker never appears."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_asserts import one_error_line

from levl_data.testing import make_tiny_shards


class Payload:
    """Unpickling calls os.system: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def _train(cli, shards: Path, out: Path, *overrides: str) -> None:
    sets = [arg for item in ("steps=2", "ckpt_every=2", "data.batch_size=8", "device=cpu",
                             *overrides) for arg in ("--set", item)]
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out, *sets,
                 env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


def _plant(target: Path, marker: Path) -> None:
    """Replace target with a payload pickle and prove the payload is live."""
    torch.save({"module": Payload(marker)}, target)
    probe = target.with_name("probe.pt")
    shutil.copy(target, probe)
    torch.load(probe, weights_only=False)
    assert marker.exists(), "the planted payload does not run; the test would prove nothing"
    marker.unlink()
    probe.unlink()


def _refused(cli, run: Path, target: Path, marker: Path) -> None:
    result = cli("levl-train", "resume", run, env={"OMP_NUM_THREADS": "1"})
    line = one_error_line(result)
    assert target.name in line and "refused to load" in line, line
    assert not marker.exists(), "the payload ran during resume"


def test_a_pickle_planted_in_the_torch_optimizer_state_does_not_run(cli, shards, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    _train(cli, shards, run)
    target = run / "checkpoints/step_0000002/train_state/optimizer.pt"
    _plant(target, marker)
    _refused(cli, run, target, marker)


@pytest.mark.parametrize("stage,planted", [
    (2, "mp_rank_00_model_states.pt"),
    # the same load path (DeepSpeed's checkpoint engine); ~35 s more, so run with `-m slow` only
    pytest.param(2, "zero_pp_rank_0_mp_rank_00_optim_states.pt", marks=pytest.mark.slow),
])
def test_a_pickle_planted_in_deepspeed_engine_state_does_not_run(cli, shards, tmp_path, stage,
                                                                 planted):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    _train(cli, shards, run, "engine=deepspeed", f"dist.zero_stage={stage}")
    target = run / "checkpoints/step_0000002/train_state/engine" / planted
    _plant(target, marker)
    _refused(cli, run, target, marker)
