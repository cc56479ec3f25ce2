"""Training objectives: LeVLJEPA (prediction + SIGReg) and the InfoNCE / SigLIP baselines.

Every objective maps the model's output dict to a dict holding `loss` (with grad) and each named
term (detached, for logging). Learnable loss parameters (temperature, bias) live here as
nn.Parameters so they are saved in the checkpoint under `objective.`.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather

from levl_model.config import ObjectiveConfig
from levl_model.errors import ModelError
from levl_model.sigreg import sigreg


def running_distributed() -> bool:
    """True under a multi-rank process group: the only case that needs cross-rank statistics."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_batch(x_BE: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows, keeping the graph (contrastive negatives span all ranks)."""
    return torch.cat(all_gather(x_BE), dim=0)


def world_size() -> int:
    return dist.get_world_size() if running_distributed() else 1


class Objective(nn.Module):
    """Base class: `forward(out, step)` → {"loss": ..., <term>: ...}.

    `grad_accum` is how many micro-batches each rank accumulates per optimizer step: terms
    whose size depends on the batch (SIGReg's N) are scaled to the step's batch, not the
    micro-batch's, so accumulation does not change the effective loss weights.
    """

    def __init__(self, cfg: ObjectiveConfig, *, distributed: bool | None = None,
                 grad_accum: int = 1) -> None:
        super().__init__()
        self.config = cfg
        self._distributed = distributed
        self.grad_accum = grad_accum

    @property
    def distributed(self) -> bool:
        """Explicit flag if given, else detected at call time (the group may start later)."""
        return running_distributed() if self._distributed is None else self._distributed

    def forward(self, out: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        """{parameter name: (low, high)} the trainer clamps after every optimizer step."""
        return {}


def sigreg_scale(scope: str, micro_batch: int, grad_accum: int, world: int) -> tuple[bool, int]:
    """(pool the characteristic function over ranks?, the N that scales SIGReg).

    N counts a whole optimizer step's rows (micro-batch × grad_accum), so accumulation leaves
    the effective λ alone. `local` is the reference code's: with data-parallel gradient
    averaging, the paper's 16 × 256 run had N = 256 whatever its world size. `global` scales by
    the global batch, so its effective λ grows with the world size (×16 at 16 ranks).
    """
    per_rank = micro_batch * grad_accum
    if scope == "global":
        return True, per_rank * world
    return scope == "global_cf", per_rank


class LeVLJEPA(Objective):
    """L = (1−λv−λt)·L_pred + λv·SIGReg(z_v) + λt·SIGReg(z_t) with the paper's ablation flags."""

    def prediction_terms(self, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pred_v, pred_t) with grad: pred_v compares vision's guess with (sg) z_t, and pred_t
        text's guess with (sg) z_v. Without predictors each z must match the other directly.
        With several views of each image, every view (or only the first `caption_views`; with
        `data.clean_views` those are the views that keep the caption's colours) predicts its
        caption, and the caption predicts the mean of its image's views."""
        cfg = self.config
        guess_t = out["pred_v"] if cfg.use_predictors else out["z_v"]
        guess_v = out["pred_t"] if cfg.use_predictors else out["z_t"]
        target_t, target_v = self._target(out["z_t"]), self._target(out["z_v"])
        views = view_count(out)
        if views > 1:
            target_v = per_image(target_v, views).mean(dim=1)
            speaking = cfg.caption_views or views
            if speaking > views:
                raise ModelError(f"objective.caption_views={speaking} but the batch has {views} "
                                 "views of each image; set it to at most data.views")
            guess_t = per_image(guess_t, views)[:, :speaking].flatten(0, 1)
            target_t = target_t.repeat_interleave(speaking, dim=0)
        return self._pred_loss(guess_t, target_t), self._pred_loss(guess_v, target_v)

    def _target(self, z_BE: torch.Tensor) -> torch.Tensor:
        return z_BE.detach() if self.config.stop_gradient else z_BE

    def _pred_loss(self, guess_BE: torch.Tensor, target_BE: torch.Tensor) -> torch.Tensor:
        if self.config.pred_loss == "cosine":
            return (2 - 2 * F.cosine_similarity(guess_BE, target_BE, dim=-1)).mean()
        return F.mse_loss(guess_BE, target_BE)

    def _sigreg(self, z_BE: torch.Tensor, step: int) -> torch.Tensor:
        cfg = self.config
        pooled, n = sigreg_scale(cfg.sigreg_scope, z_BE.shape[0], self.grad_accum,
                                 world_size() if self.distributed else 1)
        return sigreg(
            z_BE,
            num_slices=cfg.num_slices,
            step=step,
            seed=cfg.seed,
            knots=cfg.knots,
            t_max=cfg.t_max,
            distributed=pooled and self.distributed,
            n=n,
        )

    def sigreg_terms(
        self, out: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With use_sigreg=False the terms are still computed (without grad) to watch collapse.
        Several views (local ones too): SIGReg(z_v) is the mean of each view's statistic over
        the batch's images (as LeJEPA does), so N and the weight stay those of one view."""
        return self._sigreg_terms(all_views(out), out["z_t"], step)

    def _sigreg_terms(self, every_BNE: torch.Tensor, z_t: torch.Tensor,
                      step: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.use_sigreg):
            sigreg_v = torch.stack([self._sigreg(every_BNE[:, v], step)
                                    for v in range(every_BNE.shape[1])]).mean()
            return sigreg_v, self._sigreg(z_t, step)

    def forward(self, out: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        pred_v, pred_t = self.prediction_terms(out)
        pred = (pred_v + pred_t) / 2
        every_BNE = all_views(out)
        sigreg_v, sigreg_t = self._sigreg_terms(every_BNE, out["z_t"], step)
        lambda_v, lambda_t = (cfg.lambda_v, cfg.lambda_t) if cfg.use_sigreg else (0.0, 0.0)
        loss = (1 - lambda_v - lambda_t) * pred
        if cfg.use_sigreg:
            loss = loss + lambda_v * sigreg_v + lambda_t * sigreg_t
        terms = {
            "pred": pred,
            "pred_v": pred_v,
            "pred_t": pred_t,
            "sigreg_v": sigreg_v,
            "sigreg_t": sigreg_t,
        }
        if every_BNE.shape[1] > 1:
            terms["multi"] = multi_view_term(every_BNE[:, :view_count(out)], every_BNE)
            loss = loss + cfg.lambda_multi * terms["multi"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


def view_count(out: dict[str, torch.Tensor]) -> int:
    """Image rows per caption: the model encodes every view of an image, each caption once."""
    return out["z_v"].shape[0] // out["z_t"].shape[0]


def per_image(z_NE: torch.Tensor, views: int) -> torch.Tensor:
    """[B*V, E] rows, image-major (the loader's [B, V, C, H, W] flattened) -> [B, V, E]."""
    return z_NE.unflatten(0, (-1, views))


def all_views(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, V + L, E]: each image's global views, then its local views (z_v_local) if any."""
    z_BVE = per_image(out["z_v"], view_count(out))
    if "z_v_local" not in out:
        return z_BVE
    local_BLE = per_image(out["z_v_local"], out["z_v_local"].shape[0] // z_BVE.shape[0])
    return torch.cat([z_BVE, local_BLE], dim=1)


def multi_view_term(global_BVE: torch.Tensor, every_BNE: torch.Tensor) -> torch.Tensor:
    """LeVLJEPA+'s (and LeJEPA's) invariance term: every view's embedding (`every_BNE`, local
    views too) against the mean of its image's global views, squared error averaged over
    images, views and dimensions."""
    centre_B1E = global_BVE.mean(dim=1, keepdim=True)
    return (every_BNE - centre_B1E).square().mean()


def scalar_parameter(value: float) -> nn.Parameter:
    """A one-element vector, not a 0-d tensor: DeepSpeed's model broadcast views every
    parameter as bytes, which a 0-d tensor refuses (so InfoNCE/SigLIP could not start)."""
    return nn.Parameter(torch.full((1,), value))


# open_clip clamps the learnable log-scale to [0, ln 100] after each optimizer step (CLIP's cap)
LOG_SCALE_BOUNDS = (0.0, math.log(100.0))


class InfoNCE(Objective):
    """CLIP loss: L2-normalised embeddings, learnable log-temperature init log(1/0.07).

    The scale is bounded as open_clip bounds it: the parameter is clamped after the step, not
    the scale in the forward pass (which would leave the parameter drifting above ln 100 with
    zero gradient, and every later decrease first undoing that drift).
    """

    def __init__(self, cfg: ObjectiveConfig, *, distributed: bool | None = None,
                 grad_accum: int = 1) -> None:
        super().__init__(cfg, distributed=distributed, grad_accum=grad_accum)
        self.logit_scale = scalar_parameter(math.log(1 / 0.07))

    def forward(self, out: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Symmetric cross-entropy over the (gathered) batch."""
        z_v, z_t = out["z_v"], out["z_t"]
        if self.distributed:
            z_v, z_t = gather_batch(z_v), gather_batch(z_t)
        scale = self.logit_scale.exp()
        logits_VT = scale * F.normalize(z_v, dim=-1) @ F.normalize(z_t, dim=-1).T
        labels_B = torch.arange(logits_VT.shape[0], device=logits_VT.device)
        loss = (F.cross_entropy(logits_VT, labels_B) + F.cross_entropy(logits_VT.T, labels_B)) / 2
        return {"loss": loss, "infonce": loss.detach(), "logit_scale": self.logit_scale.detach()}

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        return {"logit_scale": LOG_SCALE_BOUNDS}


class SigLIP(Objective):
    """Sigmoid loss with learnable t' (init log 10; t = exp t') and bias b (init −10); t' is
    clamped to [0, ln 100] after each step, as open_clip's trainer clamps every model's."""

    def __init__(self, cfg: ObjectiveConfig, *, distributed: bool | None = None,
                 grad_accum: int = 1) -> None:
        super().__init__(cfg, distributed=distributed, grad_accum=grad_accum)
        self.t_prime = scalar_parameter(math.log(10.0))
        self.bias = scalar_parameter(-10.0)

    def forward(self, out: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """−(1/B) Σ_ij log σ(label_ij · (t·x_i·y_j + b)), label +1 on the diagonal, −1 elsewhere."""
        z_v, z_t = out["z_v"], out["z_t"]
        if self.distributed:
            z_v, z_t = gather_batch(z_v), gather_batch(z_t)
        t = self.t_prime.exp()
        logits_VT = t * F.normalize(z_v, dim=-1) @ F.normalize(z_t, dim=-1).T + self.bias
        n = logits_VT.shape[0]
        labels_VT = 2 * torch.eye(n, device=logits_VT.device, dtype=logits_VT.dtype) - 1
        loss = -F.logsigmoid(labels_VT * logits_VT).sum() / n
        return {"loss": loss, "siglip": loss.detach(), "t": t.detach(), "b": self.bias.detach()}

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        return {"t_prime": LOG_SCALE_BOUNDS}


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {
    "levljepa": LeVLJEPA,
    "infonce": InfoNCE,
    "siglip": SigLIP,
}


def build_objective(cfg: ObjectiveConfig, *, distributed: bool | None = None,
                    grad_accum: int = 1) -> Objective:
    """`distributed=None` detects a multi-rank process group when the loss is computed."""
    return OBJECTIVE_CLASSES[cfg.name](cfg, distributed=distributed, grad_accum=grad_accum)
