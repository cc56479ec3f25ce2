"""Data parallelism must not change the math: on 2 gloo ranks, the LeVLJEPA heads with global
BatchNorm and SIGReg over the global batch (`sigreg_scope=global`, the scope that claims it)
give, after data-parallel gradient averaging, the loss, gradients and BatchNorm running
statistics of one process on the concatenated batch."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from levl_model import ObjectiveConfig, build_objective
from levl_model.heads import Predictor, Projection
from levl_train.syncbn import GlobalBatchNorm1d, sync_batchnorm

N, WIDTH, E, STEP = 32, 16, 8, 3


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vision_proj, self.text_proj = Projection(WIDTH, 32, E), Projection(WIDTH, 32, E)
        self.vision_pred, self.text_pred = Predictor(E, 32, 2), Predictor(E, 32, 2)

    def forward(self, features_v, features_t):
        z_v, z_t = self.vision_proj(features_v), self.text_proj(features_t)
        return {"z_v": z_v, "z_t": z_t, "pred_v": self.vision_pred(z_v),
                "pred_t": self.text_pred(z_t)}


def build_heads() -> Heads:
    torch.manual_seed(0)
    return Heads()


def features() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(N, WIDTH, generator=generator) * 2 + 0.5,
            torch.randn(N, WIDTH, generator=generator))


def loss_and_grads(heads: Heads, features_v, features_t) -> tuple[float, torch.Tensor]:
    objective = build_objective(ObjectiveConfig(num_slices=64, sigreg_scope="global"))
    loss = objective(heads(features_v, features_t), STEP)["loss"]
    loss.backward()
    return loss.item(), torch.cat([p.grad.ravel() for p in heads.parameters()])


def running_stats(heads: Heads) -> torch.Tensor:
    return torch.cat([b.ravel().float() for name, b in heads.named_buffers()
                      if "running" in name])


def _rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        heads = sync_batchnorm(build_heads(), torch.device("cpu"))
        assert any(isinstance(m, GlobalBatchNorm1d) for m in heads.modules())
        features_v, features_t = (f.chunk(world)[rank] for f in features())
        loss, grads = loss_and_grads(heads, features_v, features_t)
        summed = torch.cat([torch.tensor([loss]), grads])
        dist.all_reduce(summed)  # what DDP / DeepSpeed do to gradients: average over ranks
        if rank == 0:
            np.save(f"{out_dir}/ranks.npy", (summed / world).numpy())
            np.save(f"{out_dir}/stats.npy", running_stats(heads).numpy())
    finally:
        dist.destroy_process_group()


def test_two_ranks_average_to_the_single_process_full_batch(tmp_path):
    mp.start_processes(_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       start_method="fork")
    heads = build_heads()
    loss, grads = loss_and_grads(heads, *features())
    ranks = np.load(tmp_path / "ranks.npy")
    assert ranks[0] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(ranks[1:], grads.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "stats.npy"), running_stats(heads).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_global_batchnorm_without_a_process_group_is_plain_batchnorm():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    converted = sync_batchnorm(build_copy(plain), torch.device("cpu"))
    x = torch.randn(10, 4)
    torch.testing.assert_close(converted(x), plain(x))
    torch.testing.assert_close(converted[1].running_var, plain[1].running_var)


def build_copy(module: nn.Module) -> nn.Module:
    clone = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    clone.load_state_dict(module.state_dict())
    return clone
