"""SIGReg: the sketched isotropic-Gaussian regulariser (Epps–Pulley test on random 1-D slices).

Exactly METHOD.md: S unit directions fresh each step, the empirical characteristic function of
every slice compared with a standard normal's, exp(-t²/2), on `knots` points of [0, t_max] with
the reference code's trapezoid weights, scaled by N and averaged over slices.

Which rows the characteristic function is estimated on (one rank's, or every rank's through an
all-reduce) and which N scales it are the caller's choice: `objective.sigreg_scope` decides
both (levl_model.objectives.sigreg_scale).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_reduce

from levl_model.errors import ModelError


def slice_directions(dim: int, num_slices: int, *, step: int, seed: int = 0,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit columns A_ES from a generator on `device` seeded by (seed, step).

    Seeding from the step (not a global RNG) means every rank draws the same A without
    communication, and a resumed run redraws exactly the directions it would have used. Drawn
    where they are used: no host draw and E×S host-to-device copy each step (a GPU's generator
    gives other numbers than the CPU's, the same on every rank). Drawn in float64 and then
    cast: float32 draws take a vectorised path on AVX2 CPUs only (last-bit differences between
    CPUs); float64 draws are the same on every CPU.
    """
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
    directions_ES = torch.randn(dim, num_slices, generator=generator, dtype=torch.float64,
                                device=device)
    return (directions_ES / directions_ES.norm(dim=0, keepdim=True)).to(dtype)


def epps_pulley_weights(knots: int, t_max: float, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(t_K, w_K): trapezoid weights (dt at the ends, 2·dt inside, as the reference code)
    times the Gaussian window exp(-t²/2), made on `device` (no copy in the step)."""
    t_K = torch.linspace(0.0, t_max, knots, dtype=dtype, device=device)
    dt = t_max / (knots - 1)
    w_K = torch.full((knots,), 2 * dt, dtype=dtype, device=device)
    w_K[0] = w_K[-1] = dt
    return t_K, w_K * torch.exp(-(t_K**2) / 2)


def empirical_cf(x_NS: torch.Tensor, t_K: torch.Tensor) -> torch.Tensor:
    """Stacked (mean_n cos(t x), mean_n sin(t x)) of shape (2, K, S).

    Materialises a K×N×S tensor: linear in N and S, and a single vectorised op per term.
    """
    tx_KNS = t_K[:, None, None] * x_NS[None]
    return torch.stack([torch.cos(tx_KNS).mean(dim=1), torch.sin(tx_KNS).mean(dim=1)])


def average_over_ranks(cf_2KS: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean of the per-rank characteristic functions, with an autograd-aware all-reduce.

    A plain dist.all_reduce would cut the graph and make gradients wrong by the world size.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ModelError(
            "sigreg(distributed=True) needs torch.distributed initialised (init_process_group first, or pass distributed=False)"
        )
    world = dist.get_world_size()
    return all_reduce(cf_2KS, op=dist.ReduceOp.SUM) / world, world


def sigreg(
    z_NE: torch.Tensor,
    *,
    num_slices: int,
    step: int,
    seed: int = 0,
    knots: int = 17,
    t_max: float = 3.0,
    distributed: bool = False,
    n: int | None = None,
) -> torch.Tensor:
    """Mean over slices of N·Σ_t w(t)·[(mean cos(t x) − φ(t))² + (mean sin(t x))²].

    distributed=True averages the characteristic function over ranks (autograd-aware);
    `n` is the N that scales the statistic, by default the rows it was estimated on (this
    rank's, times the world size when distributed). Computed in float32 (float64 for a float64
    z) with autocast off: the statistic subtracts numbers close to 1 and is scaled by N, which
    bf16 cannot resolve.
    """
    with torch.autocast(device_type=z_NE.device.type, enabled=False):
        dtype = torch.promote_types(z_NE.dtype, torch.float32)
        z_NE = z_NE.to(dtype)
        directions_ES = slice_directions(z_NE.shape[1], num_slices, step=step, seed=seed,
                                         dtype=dtype, device=z_NE.device)
        t_K, w_K = epps_pulley_weights(knots, t_max, dtype, z_NE.device)
        cf_2KS = empirical_cf(z_NE @ directions_ES, t_K)
        rows = z_NE.shape[0]
        if distributed:
            cf_2KS, world = average_over_ranks(cf_2KS)
            rows *= world
        n = rows if n is None else n
        phi_K1 = torch.exp(-(t_K**2) / 2)[:, None]
        err_KS = (cf_2KS[0] - phi_K1) ** 2 + cf_2KS[1] ** 2
        return (n * (w_K[:, None] * err_KS).sum(dim=0)).mean()
