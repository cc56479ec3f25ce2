"""Training engines: one optimizer step over a step's micro-batches, and their train state.

`TorchEngine` is the single-process loop (the CPU demo's default: no launcher, no JIT).
`DeepSpeedEngine` runs 1..N ranks with ZeRO 0-3, gradient accumulation and clipping done by
DeepSpeed. Both use the same AdamW (a torch optimizer, so DeepSpeed skips its ~45 s fused_adam
build), the same stateless LR schedule (a function of the step) and the same bf16 autocast on
CUDA, so switching engines does not change the math.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from levl_model.model import LevlModel
from levl_model.objectives import Objective
from levl_train.config import TrainConfig
from levl_train.errors import TrainError
from levl_train.schedule import lr_at

MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, input_ids, attention_mask
EMBEDDINGS = ("z_v", "z_t", "pred_v")


class TrainModule(nn.Module):
    """Model + objective as one module: the objective owns parameters too (temperatures)."""

    def __init__(self, model: LevlModel, objective: Objective, autocast_bf16: bool) -> None:
        super().__init__()
        self.model, self.objective = model, objective
        self.autocast_bf16 = autocast_bf16

    def forward(self, images, input_ids, attention_mask, step: int):
        with _autocast(images.device, self.autocast_bf16):
            out = self.model(images, input_ids, attention_mask)
            terms = self.objective(out, step)
        if not torch.isfinite(terms["loss"]):
            raise TrainError(f"loss is {terms['loss'].item()} at step {step}; lower optim.lr")
        return terms, {name: out[name].detach() for name in EMBEDDINGS}


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norms and scalars are not shrunk."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The fused kernel (CPU and CUDA) is ~6x faster than the per-tensor loop on the CPU, where
    the optimizer step over GPT-2's 50k-row embedding otherwise costs a third of a small step."""
    return torch.optim.AdamW(param_groups(module, cfg.optim.weight_decay), lr=cfg.optim.lr,
                             betas=(cfg.optim.beta1, cfg.optim.beta2), fused=True)


def enable_activation_checkpointing(model: LevlModel) -> None:
    """Recompute encoder blocks in backward: memory for compute, numerically a no-op."""
    model.vision.set_grad_checkpointing(True)
    model.text.transformer.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False})


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class StepOutput:
    terms: dict[str, torch.Tensor]  # detached loss terms of the step (mean over micro-batches)
    embeddings: dict[str, torch.Tensor]  # of the last micro-batch, for diagnostics
    lr: float
    grad_norm: float


class TorchEngine:
    """One process, one optimizer step per micro-batch (grad_accum is refused in config)."""

    def __init__(self, module: TrainModule, cfg: TrainConfig) -> None:
        self.module, self.cfg = module, cfg
        self.optimizer = build_optimizer(module, cfg)

    def step(self, micro_batches: list[MicroBatch], step: int) -> StepOutput:
        (batch,) = micro_batches
        lr = lr_at(step, self.cfg.steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        terms, embeddings = self.module(*batch, step)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        return StepOutput(_detached(terms), embeddings, lr, float(grad_norm))

    def save_state(self, state_dir: Path, is_main: bool) -> None:
        if is_main:
            torch.save(self.optimizer.state_dict(), state_dir / "optimizer.pt")

    def load_state(self, state_dir: Path, weights: dict[str, torch.Tensor]) -> None:
        """Weights from the consolidated safetensors, moments from optimizer.pt."""
        self.module.load_state_dict(_as_module_keys(weights), strict=True)
        state = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state)

    @contextlib.contextmanager
    def full_weights(self):
        yield


def _detached(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach() for name, value in terms.items()}


def _as_module_keys(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """checkpoint keys (`vision.`, `objective.`) -> TrainModule keys (`model.vision.`, ...)."""
    return {(key if key.startswith("objective.") else f"model.{key}"): value
            for key, value in tensors.items()}
