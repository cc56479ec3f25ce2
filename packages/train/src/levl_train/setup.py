"""Everything a training loop holds, built once from the config, in the order that keeps bad
input cheap: validate (every rank, nothing written), join the process group, build modules,
then create or reopen the run dir (rank 0 writes, others wait)."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from levl_data.manifest import Manifest, read_manifest
from levl_model.model import build_model
from levl_model.objectives import build_objective
from levl_model.preprocess import Views, eval_transform, train_transform
from levl_model.tokenizer import CaptionTokenizer, load_tokenizer
from levl_train.config import TrainConfig, check_config, micro_batch_size, require_manifest
from levl_train.distributed import (
    DistEnv,
    backend_for,
    barrier,
    cuda_device_index,
    dist_env,
    init_process_group,
)
from levl_train.engine import (
    TorchEngine,
    TrainModule,
    compile_towers,
    enable_activation_checkpointing,
    uses_bf16,
    weight_dtype,
)
from levl_train.errors import TrainError
from levl_train.resume import resume_mode
from levl_train.rundir import RunDir
from levl_train.stream import BatchStream
from levl_train.syncbn import sync_batchnorm


@dataclass
class Run:
    cfg: TrainConfig
    env: DistEnv
    run_dir: RunDir
    manifest: Manifest
    device: torch.device
    engine: TorchEngine  # or DeepSpeedEngine (same interface)
    tokenizer: CaptionTokenizer
    stream: BatchStream
    mode: str  # resume_mode's: new | resume | restart
    steps_done: int = 0  # steps this process completed (train_steps counts them)
    skipped: Counter[str] = field(default_factory=Counter)  # this rank's, in this process
    skipped_before: dict[str, int] = field(default_factory=dict)  # the run's, at its resume

    @property
    def resuming(self) -> bool:
        return self.mode == "resume"


def resolve_device(name: str, env: DistEnv) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("device=cuda was asked for but CUDA is not available; use --set device=cpu")
    if name == "cuda":
        index = cuda_device_index(env)  # cuda:0 where the site binds one GPU per task
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def check_launch(cfg: TrainConfig, env: DistEnv) -> int:
    """Checks that need the launch (world size); returns the per-rank micro-batch."""
    check_config(cfg)
    require_manifest(cfg)
    if cfg.engine == "torch" and env.multi:
        raise TrainError(f"engine=torch runs one process but WORLD_SIZE={env.world_size}; "
                         "add --set engine=deepspeed")
    return micro_batch_size(cfg, env.world_size)


def seed_everything(cfg: TrainConfig) -> None:
    """Same seed on every rank: model init must agree; data differs by rank inside the loader."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)


def build_module(cfg: TrainConfig, env: DistEnv, device: torch.device) -> TrainModule:
    dtype = weight_dtype(cfg)
    with default_dtype(torch.float64):
        model = build_model(cfg.model, seed=cfg.seed)
        objective = build_objective(cfg.objective, grad_accum=cfg.dist.grad_accum)
    if cfg.dist.activation_checkpointing:
        enable_activation_checkpointing(model)
    if env.multi and cfg.dist.sync_batchnorm:
        sync_batchnorm(model, device)
    if cfg.dist.compile:
        compile_towers(model)
    module = TrainModule(model, objective, uses_bf16(cfg, device), dtype, cfg.preprocess,
                         local_views=cfg.data.local_views, local_size=cfg.data.local_size)
    return module.to(device=device, dtype=dtype).train()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Draw the init in float64, then cast: float32 normal_ takes a vectorised path on AVX2
    CPUs only, so a float32 draw differs between CPUs in its last bits; a float64 draw is the
    same on every CPU, and float32 and float64 runs start from the same weights."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_engine(cfg: TrainConfig, module: TrainModule, micro_batch: int, env: DistEnv):
    if cfg.engine == "torch":
        return TorchEngine(module, cfg)
    from levl_train.ds_engine import DeepSpeedEngine

    return DeepSpeedEngine(module, cfg, micro_batch, env.world_size)


def image_pipeline(cfg: TrainConfig):
    """Sample image -> uint8 tensor: augmented (or the eval geometry), `data.views` times when
    several views of each image are asked for ([V, C, H, W]), and `data.local_views` smaller
    crops tiled into extra frames (`Views`)."""
    data = cfg.data
    if not data.augment:
        transform = eval_transform(cfg.preprocess, uint8=True)
        return Views([transform] * data.views) if data.views > 1 else transform
    scale = (data.crop_scale_min, 1.0)
    transform = train_transform(cfg.preprocess, scale, data.color_jitter,
                                grayscale_p=data.grayscale_p, hue_jitter=data.hue_jitter,
                                uint8=True)
    if data.views == 1 and not data.local_views:
        return transform
    clean = train_transform(cfg.preprocess, scale, data.color_jitter, uint8=True)
    local = [train_transform(cfg.preprocess, (data.local_scale_min, data.local_scale_max),
                             data.color_jitter, grayscale_p=data.grayscale_p,
                             hue_jitter=data.hue_jitter, uint8=True, size=data.local_size)
             ] if data.local_views else []
    return Views([clean] * data.clean_views + [transform] * (data.views - data.clean_views),
                 local * data.local_views)


def build_run(cfg: TrainConfig, out_dir: Path) -> Run:
    env = dist_env()
    micro_batch = check_launch(cfg, env)
    manifest = read_manifest(cfg.data.manifest)
    device = resolve_device(cfg.device, env)
    mode = resume_mode(Path(out_dir), cfg.to_dict())  # every rank, before anyone writes
    if cfg.engine == "deepspeed":
        init_process_group(env, backend_for(device, cfg.dist.backend), cfg.dist.timeout_s)
    seed_everything(cfg)
    engine = build_engine(cfg, build_module(cfg, env, device), micro_batch, env)
    transform = image_pipeline(cfg)
    stream = BatchStream(manifest, cfg.data, seed=cfg.seed, micro_batch=micro_batch,
                         rank=env.rank, world_size=env.world_size, transform=transform,
                         pin_memory=device.type == "cuda")
    tokenizer = load_tokenizer(cfg.tokenizer, max_length=cfg.model.text.max_length)
    run_dir = RunDir(Path(out_dir))
    if mode == "new" and env.is_main:
        run_dir.create(cfg.to_dict())
    if mode == "restart" and env.is_main:
        moved = run_dir.restart()
        print(f"levl-train: {out_dir} stopped before its first checkpoint; starting it again "
              f"from step 0 (the earlier attempt's files are in {moved})", file=sys.stderr)
    barrier()
    return Run(cfg, env, run_dir, manifest, device, engine, tokenizer, stream,
               mode=mode)
