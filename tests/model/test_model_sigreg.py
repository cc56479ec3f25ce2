"""SIGReg pinned against METHOD.md: a direct float64 loop reference, the null/alternative
behaviour of the Epps–Pulley statistic, determinism of the directions, and the distributed path."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from levl_model import ModelError
from levl_model.sigreg import (
    draw_slice_directions,
    empirical_cf,
    epps_pulley_weights,
    sigreg,
    slice_directions,
)

N, E, S = 512, 16, 256


def gaussian(n: int = N, e: int = E, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, e, generator=torch.Generator().manual_seed(seed))


def expected_null_value(knots: int = 17, t_max: float = 3.0) -> float:
    """E[statistic] for i.i.d. N(0,1) slices: N·E[err(t)] = Var cos(tX) + Var sin(tX) = 1 − e^{−t²},
    so the expectation is Σ_t w(t)(1 − e^{−t²}) ≈ 1.05, independent of N."""
    t_K, w_K = epps_pulley_weights(knots, t_max)
    return float((w_K * (1 - torch.exp(-(t_K**2)))).sum())


def reference_sigreg(
    z: np.ndarray, directions: np.ndarray, knots: int = 17, t_max: float = 3.0
) -> float:
    """METHOD.md written out with loops in float64."""
    n = z.shape[0]
    dt = t_max / (knots - 1)
    per_slice = []
    for s in range(directions.shape[1]):
        x = z @ directions[:, s]
        total = 0.0
        for k in range(knots):
            t = k * dt
            weight = (dt if k in (0, knots - 1) else 2 * dt) * math.exp(-t * t / 2)
            cos_mean = sum(math.cos(t * xi) for xi in x) / n
            sin_mean = sum(math.sin(t * xi) for xi in x) / n
            total += weight * ((cos_mean - math.exp(-t * t / 2)) ** 2 + sin_mean**2)
        per_slice.append(n * total)
    return sum(per_slice) / len(per_slice)


def test_sigreg_equals_loop_reference():
    z = gaussian(64, 8, seed=3) * 1.3 + 0.2
    directions = slice_directions(8, 12, step=5, seed=1).double().numpy()
    expected = reference_sigreg(z.double().numpy(), directions)
    got = sigreg(z, num_slices=12, step=5, seed=1).item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_weights_are_trapezoid_times_gaussian_window():
    t_K, w_K = epps_pulley_weights(5, 2.0)
    dt = 0.5
    base = torch.tensor([dt, 2 * dt, 2 * dt, 2 * dt, dt])
    assert torch.allclose(w_K, base * torch.exp(-(t_K**2) / 2))
    assert torch.allclose(t_K, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))


def test_near_zero_for_standard_normal_samples():
    """Threshold 2 = about twice the statistic's exact null expectation (≈1.05); every
    alternative below scores > 50 at this N."""
    null = expected_null_value()
    assert 0.9 < null < 1.2
    for seed in range(3):
        value = sigreg(gaussian(seed=seed), num_slices=S, step=seed).item()
        assert value < 2 * null


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("collapsed", lambda z: z[:1].expand_as(z).clone()),
        ("scaled", lambda z: 3 * z),
        ("shifted", lambda z: z + 2),
        ("shrunk", lambda z: 0.3 * z),
    ],
)
def test_large_for_non_gaussian_samples(name, transform):
    value = sigreg(transform(gaussian()), num_slices=S, step=0).item()
    assert value > 50 * expected_null_value(), name


def test_grows_linearly_with_batch_size_for_a_fixed_non_gaussian_law():
    small = sigreg(gaussian(256) * 2, num_slices=S, step=0).item()
    large = sigreg(gaussian(4096) * 2, num_slices=S, step=0).item()
    assert 12 < large / small < 20  # N ratio 16


def test_invariant_to_batch_order():
    z = gaussian() * 1.5
    permuted = z[torch.randperm(N, generator=torch.Generator().manual_seed(1))]
    a = sigreg(z, num_slices=S, step=4)
    b = sigreg(permuted, num_slices=S, step=4)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)  # only float32 summation order differs


def test_directions_depend_on_step_and_seed_only():
    a = slice_directions(E, S, step=7, seed=0)
    assert torch.equal(a, slice_directions(E, S, step=7, seed=0))
    assert not torch.allclose(a, slice_directions(E, S, step=8, seed=0))
    assert not torch.allclose(a, slice_directions(E, S, step=7, seed=1))
    torch.testing.assert_close(a.norm(dim=0), torch.ones(S))



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_memoised_directions_equal_fresh_draws(dtype):
    """slice_directions hands out the draw already made for the same arguments (the other
    modality's, another view's): equal to a fresh draw, also after eviction and redraw."""
    first = slice_directions(E, S, step=11, seed=2, dtype=dtype)
    assert slice_directions(E, S, step=11, seed=2, dtype=dtype) is first
    assert torch.equal(first, draw_slice_directions(E, S, step=11, seed=2, dtype=dtype))
    for step in range(12, 24):  # evicts step 11
        other = slice_directions(E, S, step=step, seed=2, dtype=dtype)
        assert torch.equal(other, draw_slice_directions(E, S, step=step, seed=2, dtype=dtype))
    again = slice_directions(E, S, step=11, seed=2, dtype=dtype)
    assert again is not first and torch.equal(again, first)
    other_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    assert slice_directions(E, S, step=11, seed=2, dtype=other_dtype).dtype == other_dtype
    with torch.inference_mode():
        inside = slice_directions(E, S, step=11, seed=2, dtype=dtype)
    assert inside is not again and torch.equal(inside, again)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empirical_cf_value_and_gradient_are_autograds_bitwise(dtype):
    """The hand-written backward (cos and sin kept from the forward) gives autograd's own
    gradient of the plain expression, bit for bit."""
    generator = torch.Generator().manual_seed(4)
    x = (torch.randn(24, 96, generator=generator, dtype=dtype) * 1.7).requires_grad_()
    t_K, _ = epps_pulley_weights(17, 3.0, dtype)
    upstream = torch.randn(2, 17, 96, generator=generator, dtype=dtype)
    tx = t_K[:, None, None] * x[None]
    expected = torch.stack([torch.cos(tx).mean(dim=1), torch.sin(tx).mean(dim=1)])
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    got = empirical_cf(x, t_K)
    (grad,) = torch.autograd.grad(got, x, upstream)
    assert torch.equal(got, expected)
    assert torch.equal(grad, expected_grad)

def test_same_step_same_value_and_different_step_different_value():
    z = gaussian() * 2
    assert sigreg(z, num_slices=S, step=3).item() == sigreg(z, num_slices=S, step=3).item()
    assert sigreg(z, num_slices=S, step=3).item() != sigreg(z, num_slices=S, step=4).item()


def test_ignores_global_rng_and_autocast_dtype():
    z = gaussian() * 2
    torch.manual_seed(123)
    first = sigreg(z, num_slices=S, step=0)
    torch.manual_seed(456)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        second = sigreg(z.bfloat16(), num_slices=S, step=0)
    assert second.dtype == torch.float32
    torch.testing.assert_close(first, second, rtol=2e-2, atol=0)


def test_gradient_pushes_a_scaled_batch_toward_unit_variance():
    z = (gaussian() * 2).requires_grad_()
    sigreg(z, num_slices=S, step=0).backward()
    # d/dz of the statistic for a too-wide batch points outward: descent shrinks ‖z‖.
    assert (z.grad * z).sum() > 0


def test_distributed_without_process_group_is_a_model_error():
    with pytest.raises(ModelError, match="init_process_group"):
        sigreg(gaussian(), num_slices=8, step=0, distributed=True)


def _rank_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank: SIGReg on its half of a shared batch, plus the contrastive baselines."""
    from levl_model import ObjectiveConfig, build_objective

    torch.set_num_threads(1)  # forked child: no OpenMP pool inherited half-built
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),  # a broken rank fails the test instead of hanging it
    )
    try:
        z_full = gaussian(64, 8) * 1.7
        local = z_full.chunk(world)[rank].clone().requires_grad_()
        value = sigreg(local, num_slices=32, step=2, distributed=True)
        value.backward()
        z_t = gaussian(64, 8, seed=9).chunk(world)[rank]
        out = {"z_v": local.detach(), "z_t": z_t}
        losses = [
            build_objective(ObjectiveConfig(name=n))(out, 0)["loss"].item()
            for n in ("infonce", "siglip")
        ]
        np.save(
            f"{out_dir}/rank{rank}.npy",
            np.concatenate([[value.item(), *losses], local.grad.numpy().ravel()]),
        )
    finally:
        dist.destroy_process_group()


def test_distributed_two_ranks_equal_the_full_batch(tmp_path):
    """Two gloo ranks (forked: spawn would re-import torch+timm+transformers for ~30 s).
    Value = full-batch SIGReg; each rank's gradient = world × the full-batch gradient of its rows,
    which DDP's gradient averaging turns into exactly the full-batch gradient."""
    world = 2
    mp.start_processes(
        _rank_worker,
        args=(world, str(tmp_path / "init"), str(tmp_path)),
        nprocs=world,
        start_method="fork",
    )
    z_full = (gaussian(64, 8) * 1.7).requires_grad_()
    full = sigreg(z_full, num_slices=32, step=2)
    full.backward()
    from levl_model import ObjectiveConfig, build_objective

    out = {"z_v": z_full.detach(), "z_t": gaussian(64, 8, seed=9)}
    full_losses = [
        build_objective(ObjectiveConfig(name=n), distributed=False)(out, 0)["loss"].item()
        for n in ("infonce", "siglip")
    ]
    for rank, rows in enumerate(z_full.grad.chunk(world)):
        saved = np.load(tmp_path / f"rank{rank}.npy")
        assert saved[0] == pytest.approx(full.item(), rel=1e-5)
        assert saved[1:3] == pytest.approx(full_losses, rel=1e-5)
        np.testing.assert_allclose(
            saved[3:].reshape(rows.shape), world * rows.numpy(), rtol=1e-4, atol=1e-6
        )
