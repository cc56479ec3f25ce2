"""BatchNorm over the global batch for the projection and predictor heads.

With per-rank statistics each rank normalises its own slice of the batch, so the heads (and
SIGReg's target distribution) would change with the number of ranks. torch's SyncBatchNorm
refuses CPU tensors, so on the CPU (gloo) we use `GlobalBatchNorm1d`: the same parameters and
buffers (checkpoint keys unchanged), statistics from an autograd-aware all-reduce.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d on (B, C) inputs whose batch statistics span every rank.

    The all-reduce is autograd-aware, so each rank's gradient carries the other ranks' share,
    which data-parallel gradient averaging turns into the full-batch gradient.
    """

    def forward(self, x_BC: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x_BC)
        x_BC32 = x_BC.float()
        count = torch.tensor([float(x_BC.shape[0])], device=x_BC.device)
        count = all_reduce(count)
        mean_C = all_reduce(x_BC32.sum(0)) / count
        centered_BC = x_BC32 - mean_C
        var_C = all_reduce((centered_BC * centered_BC).sum(0)) / count
        self._update_running_stats(mean_C.detach(), var_C.detach(), float(count))
        normed_BC = centered_BC * torch.rsqrt(var_C + self.eps)
        if self.affine:
            normed_BC = normed_BC * self.weight + self.bias
        return normed_BC.to(x_BC.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean_C, var_C, count: float) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        unbiased_C = var_C * count / max(count - 1.0, 1.0)
        self.running_mean.lerp_(mean_C.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_C.to(self.running_var.dtype), momentum)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm1d in `module` switched to global statistics, in place; returns it."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm1d) and not isinstance(child, GlobalBatchNorm1d):
            setattr(module, name, _as_global(child))
        else:
            sync_batchnorm(child, device)
    return module


def _as_global(bn: nn.BatchNorm1d) -> GlobalBatchNorm1d:
    converted = GlobalBatchNorm1d(bn.num_features, bn.eps, bn.momentum, bn.affine,
                                  bn.track_running_stats, device=bn.running_mean.device
                                  if bn.running_mean is not None else None)
    converted.load_state_dict(bn.state_dict())
    converted.train(bn.training)
    return converted
