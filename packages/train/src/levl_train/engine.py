"""Training engines: one optimizer step over a step's micro-batches, and their train state.

`TorchEngine` is the single-process loop (the CPU demo's default: no launcher, no JIT); it
accumulates `dist.grad_accum` micro-batches itself. `DeepSpeedEngine` runs 1..N ranks with
ZeRO 0-3, gradient accumulation and clipping done by DeepSpeed. Both use the same AdamW (a torch
optimizer, so DeepSpeed skips its ~45 s fused_adam build), the same stateless LR schedule (a
function of the step) and the same bf16 autocast rule (`uses_bf16`), so switching engines does
not change the math.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from levl_model.model import LevlModel
from levl_model.objectives import Objective
from levl_model.preprocess import Preprocess, normalize, pixel_stats, split_local_views
from levl_train.config import TrainConfig
from levl_train.safe_load import load_weights_only
from levl_train.schedule import lr_at

MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, input_ids, attention_mask
EMBEDDINGS = ("z_v", "z_t", "pred_v")


class TrainModule(nn.Module):
    """Model + objective as one module: the objective owns parameters too (temperatures).
    uint8 images from the loader are normalised here, on the device, with `preprocess`."""

    def __init__(self, model: LevlModel, objective: Objective, autocast_bf16: bool,
                 dtype: torch.dtype = torch.float32, preprocess: Preprocess | None = None, *,
                 local_views: int = 0, local_size: int = 0) -> None:
        super().__init__()
        self.model, self.objective = model, objective
        self.autocast_bf16, self.dtype, self.preprocess = autocast_bf16, dtype, preprocess
        self.local_views, self.local_size = local_views, local_size  # data.local_*

    def forward(self, images, input_ids, attention_mask, step: int):
        """`images` [B, C, H, W], or [B, V, C, H, W] with V views of each image (data.views),
        all encoded as one batch, after which frames of tiled local views (data.local_views)
        are cut out and encoded as another; the diagnostics see the first view of each image."""
        local = None
        if self.local_views:
            images, local = split_local_views(images, self.local_views, self.local_size)
            local = self._pixels(local.flatten(0, 1))
        views = images.shape[1] if images.ndim == 5 else 1
        if images.ndim == 5:
            images = images.flatten(0, 1)
        images = self._pixels(images)
        with _autocast(images.device, self.autocast_bf16):
            out = self.model(images, input_ids, attention_mask, local)
            terms = self.objective(out, step)
        return terms, {name: out[name][::views].detach() if name != "z_t" else out[name].detach()
                       for name in EMBEDDINGS if name in out}

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = normalize(images, self.preprocess, self._pixel_stats(images.device))
        return images.to(self.dtype)  # float32 pixels are exact in float64

    def _pixel_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The preprocess mean and std on `device`, made once: a tensor made from a Python list
        on a GPU is a copy the host waits for, every step."""
        cached = getattr(self, "_stats", None)
        if cached is None or cached[0].device != device:
            cached = self._stats = pixel_stats(self.preprocess, device)
        return cached


def _autocast(device: torch.device, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast on CUDA when precision=bf16; on the CPU only when also asked for with
    cpu_bf16 (slow on most CPUs, and it would move CPU runs off their fp32 numbers)."""
    if cfg.precision != "bf16":
        return False
    return device.type == "cuda" or cfg.cpu_bf16


def weight_dtype(cfg: TrainConfig) -> torch.dtype:
    """float64 only when asked for (precision=fp64); bf16 runs keep fp32 weights (autocast)."""
    return torch.float64 if cfg.precision == "fp64" else torch.float32


TEXT_SIDE = ("model.text.", "model.text_proj.")  # what makes z_t (not the text predictor)


def param_groups(module: nn.Module, weight_decay: float, text_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on matrices only: biases, norms and scalars are not shrunk. With a
    `text_lr_scale` other than 1 the text tower and its projection get groups of their own,
    which `set_lr` runs at that multiple of the schedule's lr (at 1 the groups stay the two a
    checkpoint written before the option holds)."""
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    sides = [(named, 1.0)] if text_lr_scale == 1.0 else [
        ([(n, p) for n, p in named if not n.startswith(TEXT_SIDE)], 1.0),
        ([(n, p) for n, p in named if n.startswith(TEXT_SIDE)], text_lr_scale)]
    groups = []
    for side, scale in sides:
        groups += [
            {"params": [p for _, p in side if p.ndim >= 2], "weight_decay": weight_decay,
             "lr_scale": scale},
            {"params": [p for _, p in side if p.ndim < 2], "weight_decay": 0.0, "lr_scale": scale},
        ]
    return groups


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The fused kernel (CPU and CUDA) is ~6x faster than the per-tensor loop on the CPU, where
    the optimizer step over GPT-2's 50k-row embedding otherwise costs a third of a small step."""
    groups = param_groups(module, cfg.optim.weight_decay, cfg.optim.text_lr_scale)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr,
                             betas=(cfg.optim.beta1, cfg.optim.beta2), fused=True)


def enable_activation_checkpointing(model: LevlModel) -> None:
    """Recompute every ViT and GPT-2 block in backward: memory for compute, numerically a
    no-op. Non-reentrant checkpoints (timm's default too), which need no input to require grad.
    transformers 5 renamed `gradient_checkpointing_enable` (deprecated, gone in v6)."""
    model.vision.set_grad_checkpointing(True)
    text, non_reentrant = model.text.transformer, {"use_reentrant": False}
    if hasattr(text, "activation_checkpointing_enable"):
        text.activation_checkpointing_enable(activation_checkpointing_kwargs=non_reentrant)
    else:
        text.gradient_checkpointing_enable(gradient_checkpointing_kwargs=non_reentrant)


# The backend of `dist.compile`. A private hook for tests, which swap in "aot_eager" (the same
# traced graphs without inductor's C++ build, which takes ~1 min for the micro towers here).
_COMPILE_BACKEND = "inductor"


def compile_towers(model: LevlModel) -> None:
    """torch.compile the ViT's and GPT-2's forward in place (nn.Module.compile), rather than
    wrapping them in an OptimizedModule: parameter names keep no `_orig_mod.` prefix, so
    model.safetensors, the optimizer and DeepSpeed state and resume are the same as eager. The
    heads and the objective stay eager: small, and SIGReg draws its slices by step. Captions
    are padded to each batch's longest, so the text tower is compiled for any length at once
    (dynamic): dynamo would otherwise compile it for the first length, then again."""
    model.vision.compile(backend=_COMPILE_BACKEND)
    model.text.compile(backend=_COMPILE_BACKEND, dynamic=True)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@dataclass
class StepOutput:
    terms: dict[str, torch.Tensor]  # detached loss terms of the step (mean over micro-batches)
    embeddings: dict[str, torch.Tensor]  # of the last micro-batch, for diagnostics
    lr: float
    # A 0-d tensor on the device, like the terms: the step never waits for the device to read
    # a value back (the loop reads them, and checks the loss is finite, when it logs).
    grad_norm: torch.Tensor


class TorchEngine:
    """One process; one optimizer step over the step's `grad_accum` micro-batches."""

    def __init__(self, module: TrainModule, cfg: TrainConfig) -> None:
        self.module, self.cfg = module, cfg
        self.optimizer = build_optimizer(module, cfg)

    def step(self, micro_batches: list[MicroBatch], step: int) -> StepOutput:
        """Each micro-batch's loss is scaled by 1/len(micro_batches) before its backward (what
        DeepSpeed does), so the summed gradient is their mean: for a per-sample loss exactly
        the gradient of one batch holding them all. Batch statistics (BatchNorm, SIGReg's
        characteristic function) stay per micro-batch, as under DeepSpeed."""
        lr = lr_at(step, self.cfg.steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        summed: dict[str, torch.Tensor] = {}
        for batch in micro_batches:
            terms, embeddings = self.module(*batch, step)
            (terms["loss"] / len(micro_batches)).backward()
            for name, value in _detached(terms).items():
                summed[name] = summed.get(name, 0) + value / len(micro_batches)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = clip_gradients(params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        clamp_bounded_parameters(self.module)
        return StepOutput(summed, embeddings, lr, grad_norm)

    def save_state(self, state_dir: Path, is_main: bool) -> None:
        if is_main:
            torch.save(self.optimizer.state_dict(), state_dir / "optimizer.pt")

    def load_state(self, state_dir: Path, weights: dict[str, torch.Tensor]) -> None:
        """Weights from the consolidated safetensors, moments from optimizer.pt."""
        self.module.load_state_dict(_as_module_keys(weights), strict=True)
        state = load_weights_only(state_dir / "optimizer.pt")
        self.optimizer.load_state_dict(state)

    @contextlib.contextmanager
    def full_weights(self):
        yield


def bounded_parameters(module: TrainModule) -> list[tuple[nn.Parameter, float, float]]:
    """(parameter, low, high) for each objective parameter kept in a range (a logit scale)."""
    objective = module.objective
    return [(getattr(objective, name), low, high)
            for name, (low, high) in objective.parameter_bounds().items()]


@torch.no_grad()
def clamp_bounded_parameters(module: TrainModule) -> None:
    """After the optimizer step, as open_clip clamps its logit scale."""
    for parameter, low, high in bounded_parameters(module):
        parameter.clamp_(low, high)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` and return the norm before clipping (on the device); 0 means no
    clipping (DeepSpeed's convention), where torch's clip_grad_norm_ would instead scale every
    gradient to zero."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def _detached(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach() for name, value in terms.items()}


def _as_module_keys(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """checkpoint keys (`vision.`, `objective.`) -> TrainModule keys (`model.vision.`, ...)."""
    return {(key if key.startswith("objective.") else f"model.{key}"): value
            for key, value in tensors.items()}
