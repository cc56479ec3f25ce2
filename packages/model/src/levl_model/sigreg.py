"""SIGReg: the sketched isotropic-Gaussian regulariser (Epps–Pulley test on random 1-D slices).

Exactly METHOD.md: S unit directions fresh each step, the empirical characteristic function of
every slice compared with a standard normal's, exp(-t²/2), on `knots` points of [0, t_max] with
the reference code's trapezoid weights, scaled by N and averaged over slices.

Which rows the characteristic function is estimated on (one rank's, or every rank's through an
all-reduce) and which N scales it are the caller's choice: `objective.sigreg_scope` decides
both (levl_model.objectives.sigreg_scale).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable
from torch.distributed.nn.functional import all_reduce

from levl_model.errors import ModelError

# The last few draws, handed out again: LeVLJEPA's two modalities (and each view) use the same
# (step, seed) directions, and on a CPU drawing them (E×S float64 normals, 1M at E=256 and
# S=4096) was most of SIGReg's time. Each entry is E×S numbers (4 MB at E=256, S=4096, fp32).
_KEPT = 4
_drawn: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_knots: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()


def _memoised(cache: OrderedDict, key: tuple, make):
    """cache[key], made by make() on a miss; only the _KEPT most recently used are kept. The key
    holds inference mode: a tensor made under torch.inference_mode cannot be saved for a
    backward outside it."""
    key = (*key, torch.is_inference_mode_enabled())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > _KEPT:
        cache.popitem(last=False)
    return value


def draw_slice_directions(dim: int, num_slices: int, *, step: int, seed: int = 0,
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
    return directions_ES.div_(directions_ES.norm(dim=0, keepdim=True)).to(dtype)


def slice_directions(dim: int, num_slices: int, *, step: int, seed: int = 0,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """draw_slice_directions(...), memoised: a pure function of its arguments, so a repeated
    call (the other modality, another view, the same step again) returns the tensor already
    drawn, equal to a fresh draw. Shared: callers must not modify it in place."""
    device = torch.device(device)
    return _memoised(_drawn, (dim, num_slices, step, seed, dtype, device),
                     lambda: draw_slice_directions(dim, num_slices, step=step, seed=seed,
                                                   dtype=dtype, device=device))


def epps_pulley_weights(knots: int, t_max: float, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(t_K, w_K): trapezoid weights (dt at the ends, 2·dt inside, as the reference code)
    times the Gaussian window exp(-t²/2), made on `device` (no copy in the step)."""
    t_K, w_K, _ = _knots_and_target(knots, t_max, dtype, device)
    return t_K.clone(), w_K.clone()  # the memoised ones are shared by every SIGReg call


def _knots_and_target(knots: int, t_max: float, dtype: torch.dtype,
                      device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t_K, w_K, φ_K = exp(-t²/2)), made once per (knots, t_max, dtype, device): on a GPU
    each is a handful of kernel launches every SIGReg call otherwise. Shared, read-only."""
    device = torch.device(device)

    def make() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t_K = torch.linspace(0.0, t_max, knots, dtype=dtype, device=device)
        dt = t_max / (knots - 1)
        w_K = torch.full((knots,), 2 * dt, dtype=dtype, device=device)
        w_K[0] = w_K[-1] = dt
        phi_K = torch.exp(-(t_K**2) / 2)
        return t_K, w_K * phi_K, phi_K

    return _memoised(_knots, (knots, t_max, dtype, device), make)


def empirical_cf(x_NS: torch.Tensor, t_K: torch.Tensor) -> torch.Tensor:
    """Stacked (mean_n cos(t x), mean_n sin(t x)) of shape (2, K, S).

    Materialises K×N×S tensors: linear in N and S, and a single vectorised op per term. The
    backward is _EmpiricalCF's: autograd's own gradient, bit for bit, without recomputing cos
    and sin.
    """
    return _EmpiricalCF.apply(x_NS, t_K)


class _EmpiricalCF(torch.autograd.Function):
    """The forward autograd would record for `torch.stack([cos(t x).mean(1), sin(t x).mean(1)])`,
    and its backward, with three savings that leave every number as it was: cos and sin of t x
    are kept from the forward (autograd recomputes both from t x, ~1/3 of SIGReg on a CPU), the
    mean's 1/N and cos' minus sign are applied to the K×S gradient before it is broadcast over
    N rather than to the K×N×S one (division is correctly rounded and negation exact, so
    (−g/N)·sin(t x) is autograd's (g/N)·(−sin(t x)) bitwise), and the K×N×S products are made
    in place (no fresh K×N×S buffers to allocate and fault in). The sum over the K knots is the
    same reduction of a tensor of the same shape and layout. Costs one K×N×S tensor more memory
    until the backward (cos and sin kept instead of t x). Once differentiable, with no gradient
    for t_K and no torch.func support (`forward(ctx, ...)`): nothing in levl needs those.
    """

    @staticmethod
    def forward(ctx, x_NS: torch.Tensor, t_K: torch.Tensor) -> torch.Tensor:
        tx_KNS = t_K[:, None, None] * x_NS[None]
        cos_KNS, sin_KNS = torch.cos(tx_KNS), torch.sin(tx_KNS)
        ctx.save_for_backward(cos_KNS, sin_KNS, t_K)
        return torch.stack([cos_KNS.mean(dim=1), sin_KNS.mean(dim=1)])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_2KS: torch.Tensor) -> tuple[torch.Tensor, None]:
        cos_KNS, sin_KNS, t_K = ctx.saved_tensors
        n = cos_KNS.shape[1]
        # In place in the saved buffers, which nothing else holds (a second backward through
        # the same graph fails on their version counters instead of reading them modified).
        grad_tx_KNS = sin_KNS.mul_((-(grad_2KS[0] / n))[:, None])
        grad_tx_KNS.add_(cos_KNS.mul_((grad_2KS[1] / n)[:, None]))
        return grad_tx_KNS.mul_(t_K[:, None, None]).sum(dim=0), None


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
        t_K, w_K, phi_K = _knots_and_target(knots, t_max, dtype, z_NE.device)
        cf_2KS = empirical_cf(z_NE @ directions_ES, t_K)
        rows = z_NE.shape[0]
        if distributed:
            cf_2KS, world = average_over_ranks(cf_2KS)
            rows *= world
        n = rows if n is None else n
        err_KS = (cf_2KS[0] - phi_K[:, None]) ** 2 + cf_2KS[1] ** 2
        return (n * (w_K[:, None] * err_KS).sum(dim=0)).mean()
