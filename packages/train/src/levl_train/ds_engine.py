"""The DeepSpeed engine: data parallel over 1..N ranks with ZeRO stage 0-3.

DeepSpeed owns gradient averaging, accumulation (it scales each micro-batch's loss by
1/grad_accum) and clipping; we own the optimizer (a torch AdamW: no fused_adam JIT build), the
LR (set every step from the stateless schedule); bf16 runs use DeepSpeed's own torch_autocast
(fp32 weights, bf16 forward and bf16 gradient reduction: ds_config.deepspeed_config). Its
engine checkpoint (module, optimizer partitions) is the train state, read back weights-only
(levl_train.safe_load), never unpickled as code.
The DeepSpeed config is cluster/deepspeed/zero{stage}.json merged with the recipe (ds_config.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pydantic
import torch

from levl_train.config import TrainConfig
from levl_train.distributed import use_extensions_cache
from levl_train.ds_config import config_path, deepspeed_config
from levl_train.engine import (
    MicroBatch,
    StepOutput,
    TrainModule,
    _detached,
    bounded_parameters,
    build_optimizer,
    set_lr,
)
from levl_train.errors import TrainError
from levl_train.safe_load import WeightsOnlyCheckpointEngine
from levl_train.schedule import lr_at

ENGINE_TAG = "engine"


class DeepSpeedEngine:
    def __init__(self, module: TrainModule, cfg: TrainConfig, micro_batch: int,
                 world_size: int) -> None:
        use_extensions_cache()
        import deepspeed

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        self.cfg = cfg
        # DeepSpeed autocasts the forward itself (and reduces gradients in bf16): the module's
        # own autocast would nest inside it
        bf16, module.autocast_bf16 = module.autocast_bf16, False
        self.ds_config = deepspeed_config(cfg, micro_batch, world_size, bf16)  # RUN/deepspeed.json
        try:
            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=module, optimizer=build_optimizer(module, cfg), config=self.ds_config)
        except pydantic.ValidationError as exc:  # a misspelt or mistyped key in the ZeRO file
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise TrainError(f"DeepSpeed config {config_path(cfg)}: {where}: {error['msg']}; "
                             "fix the file") from None
        self.module: TrainModule = self.engine.module
        # DeepSpeed's own load unpickles with weights_only=False: a planted pickle would run.
        self.engine.checkpoint_engine = WeightsOnlyCheckpointEngine(self.engine.checkpoint_engine)

    def step(self, micro_batches: list[MicroBatch], step: int) -> StepOutput:
        lr = lr_at(step, self.cfg.steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        summed: dict[str, torch.Tensor] = {}
        for batch in micro_batches:
            terms, embeddings = self.engine(*batch, step)
            self.engine.backward(terms["loss"])
            grad_norm = self._grad_norm() if self.engine.is_gradient_accumulation_boundary() \
                else None
            self.engine.step()
            for name, value in _detached(terms).items():
                summed[name] = summed.get(name, 0) + value / len(micro_batches)
        self._clamp_bounded_parameters()
        norm = self.engine.get_global_grad_norm() if grad_norm is None else grad_norm
        return StepOutput(summed, embeddings, lr, torch.as_tensor(0.0 if norm is None else norm))

    @torch.no_grad()
    def _clamp_bounded_parameters(self) -> None:
        """Clamp both copies of a bounded parameter: ZeRO's fp32 master partition (else the next
        step would start from the unclamped value) and the module's working copy (gathered and
        re-partitioned under stage 3). Every rank calls this: the master read is a collective."""
        from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

        for parameter, low, high in bounded_parameters(self.module):
            master = safe_get_full_fp32_param(parameter)
            if master is not None:
                safe_set_full_fp32_param(parameter, master.clamp(low, high))
            with self._gathered([parameter]):
                parameter.data.clamp_(low, high)

    def _gathered(self, parameters: list[torch.nn.Parameter]):
        if self.cfg.dist.zero_stage < 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(parameters, modifier_rank=0)

    def _grad_norm(self) -> torch.Tensor | None:
        """ZeRO records the global norm while clipping; stage 0 does not, so measure it here
        (gradients are already averaged over ranks after the boundary backward)."""
        if self.cfg.dist.zero_stage > 0:
            return None
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    def save_state(self, state_dir: Path, is_main: bool) -> None:
        """Every rank writes its optimizer partition; DeepSpeed barriers inside."""
        self.engine.save_checkpoint(str(state_dir), tag=ENGINE_TAG, save_latest=False)

    def load_state(self, state_dir: Path, weights: dict[str, torch.Tensor]) -> None:
        path, _ = self.engine.load_checkpoint(str(state_dir), tag=ENGINE_TAG,
                                              load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"{state_dir}/{ENGINE_TAG}: no DeepSpeed engine state")

    def full_weights(self):
        """Under ZeRO-3 each rank holds a shard of every parameter: gather them (on every rank,
        a collective) so rank 0 can write the consolidated weights."""
        if self.cfg.dist.zero_stage < 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.module.parameters()),
                                                 modifier_rank=None)
