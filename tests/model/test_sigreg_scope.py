"""`objective.sigreg_scope` on real gloo ranks, against SIGReg written out directly (METHOD.md):
each rank's value and gradient, the objective data-parallel averaging makes of them, the
`global` scope's independence from how a batch is split over ranks, and the effective weight's
independence from gradient accumulation."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from levl_model import ObjectiveConfig, build_objective
from levl_model.sigreg import slice_directions

ROWS, E, S, STEP = 64, 8, 32, 7
SCOPES = ("local", "global", "global_cf")


def batch() -> torch.Tensor:
    """A clearly non-Gaussian embedding batch (scaled and shifted normal), float64."""
    generator = torch.Generator().manual_seed(5)
    return torch.randn(ROWS, E, generator=generator, dtype=torch.float64) * 1.8 + 0.3


def direct_sigreg(z_NE: torch.Tensor, n: int) -> torch.Tensor:
    """METHOD.md written out: x = Z A; err(t) = (mean cos tx − e^{−t²/2})² + (mean sin tx)²;
    n · Σ_t w(t)·err(t) with trapezoid weights (dt ends, 2·dt inside) × e^{−t²/2}; mean over
    slices. Same directions as levl (the step-seeded draw is part of the contract)."""
    directions = slice_directions(E, S, step=STEP, seed=0, dtype=torch.float64)
    x_NS = z_NE @ directions
    dt = 3.0 / 16
    total = torch.zeros(S, dtype=torch.float64)
    for k in range(17):
        t = k * dt
        window = np.exp(-t * t / 2)
        weight = (dt if k in (0, 16) else 2 * dt) * window
        err = (torch.cos(t * x_NS).mean(0) - window) ** 2 + torch.sin(t * x_NS).mean(0) ** 2
        total = total + weight * err
    return (n * total).mean()


def effective_objective(scope: str, z_NE: torch.Tensor, world: int) -> torch.Tensor:
    """What data-parallel training minimises: the mean over ranks of each rank's term."""
    m = ROWS // world
    if scope == "local":
        return sum(direct_sigreg(rows, m) for rows in z_NE.split(m)) / world
    return direct_sigreg(z_NE, m * world if scope == "global" else m)


def _rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        rows = batch().chunk(world)[rank]
        saved = []
        for scope in SCOPES:
            z_v = rows.clone().requires_grad_()
            objective = build_objective(ObjectiveConfig(num_slices=S, sigreg_scope=scope))
            sigreg_v, _ = objective.sigreg_terms({"z_v": z_v, "z_t": rows}, STEP)
            sigreg_v.backward()
            saved.append(np.concatenate([[sigreg_v.item()], z_v.grad.numpy().ravel()]))
        np.save(f"{out_dir}/rank{rank}.npy", np.stack(saved))
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, tmp_path) -> list[np.ndarray]:
    """Forked gloo ranks (spawn would re-import torch, timm and transformers in each)."""
    folder = tmp_path / f"world{world}"
    folder.mkdir()
    mp.start_processes(_rank, args=(world, str(folder / "init"), str(folder)), nprocs=world,
                       start_method="fork")
    return [np.load(folder / f"rank{rank}.npy") for rank in range(world)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict[int, list[np.ndarray]]:
    tmp_path = tmp_path_factory.mktemp("scopes")
    return {world: run_ranks(world, tmp_path) for world in (1, 2, 4)}


@pytest.mark.parametrize("scope", SCOPES)
def test_each_rank_sees_the_direct_formula_and_ddp_averaging_gives_its_gradient(ranks, scope):
    """A rank's gradient must be world × d(effective objective)/d(its rows): DDP averages the
    parameter gradients over ranks, so that is what turns into the objective's gradient."""
    world, m = 2, ROWS // 2
    z_NE = batch().requires_grad_()
    effective_objective(scope, z_NE, world).backward()
    for rank, saved in enumerate(ranks[world]):
        row = saved[SCOPES.index(scope)]
        rows = z_NE.detach()[rank * m:(rank + 1) * m]
        whole = z_NE.detach()
        expected_value = {"local": direct_sigreg(rows, m), "global": direct_sigreg(whole, ROWS),
                          "global_cf": direct_sigreg(whole, m)}[scope]
        assert row[0] == pytest.approx(expected_value.item(), rel=1e-9)
        expected_grad = world * z_NE.grad[rank * m:(rank + 1) * m]
        np.testing.assert_allclose(row[1:].reshape(m, E), expected_grad.numpy(), rtol=1e-7,
                                   atol=1e-12)


def test_global_scope_is_the_same_loss_and_step_on_1_2_or_4_ranks(ranks):
    index = SCOPES.index("global")
    values, gradients = {}, {}
    for world, saved in ranks.items():
        values[world] = [rank[index][0] for rank in saved]
        gradients[world] = np.concatenate([rank[index][1:].reshape(-1, E) / world
                                           for rank in saved])
    np.testing.assert_allclose(values[2] + values[4], values[1] * 6, rtol=1e-12)
    np.testing.assert_allclose(gradients[2], gradients[1], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(gradients[4], gradients[1], rtol=1e-7, atol=1e-12)


def test_local_scope_weight_does_not_grow_with_the_world_size(ranks):
    """The paper's run: per-rank N, so on 4 ranks the term is one rank's statistic (about a
    quarter of the batch's, plus the estimator's O(1) bias), where `global` keeps the global
    batch's N: its weight relative to `local` grows with the world size."""
    local, glob = SCOPES.index("local"), SCOPES.index("global")
    local_4 = np.mean([rank[local][0] for rank in ranks[4]])
    global_4, global_1 = ranks[4][0][glob][0], ranks[1][0][glob][0]
    assert global_4 == pytest.approx(global_1, rel=1e-9)
    assert local_4 < global_4 / 2


@pytest.mark.parametrize("scope", SCOPES)
def test_gradient_accumulation_does_not_change_the_sigreg_weight(scope):
    """A micro-batch of m rows accumulated twice is scaled by the step's 2m rows: for a
    non-Gaussian batch the micro-batches' mean term matches the whole batch's (up to the
    estimator's O(1) bias, ~1 per halving), where scaling by the micro-batch would halve it."""
    z_NE = batch()
    whole, _ = build_objective(ObjectiveConfig(num_slices=S, sigreg_scope=scope),
                               distributed=False).sigreg_terms({"z_v": z_NE, "z_t": z_NE}, STEP)
    accumulating = build_objective(ObjectiveConfig(num_slices=S, sigreg_scope=scope),
                                   distributed=False, grad_accum=2)
    halves = [accumulating.sigreg_terms({"z_v": part, "z_t": part}, STEP)[0]
              for part in z_NE.chunk(2)]
    for part, term in zip(z_NE.chunk(2), halves, strict=True):
        assert float(term) == pytest.approx(float(direct_sigreg(part, ROWS)), rel=1e-9)
    assert float(sum(halves) / 2) == pytest.approx(float(whole), rel=0.15)
