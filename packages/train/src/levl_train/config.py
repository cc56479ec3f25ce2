"""Typed run configuration: a recipe returns a `TrainConfig`; the CLI may override a few keys.

Everything a run needs is in one frozen tree of dataclasses, so the resolved config written to
the run dir (and into each checkpoint) is the whole truth about how the run was made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from levl_model.config import (
    HeadsConfig,
    ModelConfig,
    ObjectiveConfig,
    TextConfig,
    VisionConfig,
    objective_init,
    uses_predictors,
)
from levl_model.overrides import OverrideError, set_from_text
from levl_model.preprocess import Preprocess
from levl_train.errors import TrainError


@dataclass(frozen=True)
class DataConfig:
    manifest: str | None = None
    batch_size: int = 64
    num_workers: int = 2
    shuffle_buffer: int = 2000
    augment: bool = True
    # with augment: RandomResizedCrop area scale (crop_scale_min, 1) and colour jitter; open_clip
    # trains with (0.9, 1) and no jitter
    crop_scale_min: float = 0.8
    color_jitter: bool = True
    # with augment: the fraction of images turned grey (RandomGrayscale), 0 = off
    grayscale_p: float = 0.0
    # with augment and > 0: LeVLJEPA+'s strong colour jitter (brightness/contrast 0.4,
    # saturation 0.2, hue +-hue_jitter, on 80 % of images) instead of the mild one
    hue_jitter: float = 0.0
    # augmented views of each image (LeVLJEPA+'s global views; 1 = one view, no multi-view term)
    views: int = 1
    # of those views, the first `clean_views` keep the image's colours (the crop and the mild
    # jitter, no strong jitter or greyscale), so the caption's colour words stay true of them
    clean_views: int = 0
    # LeVLJEPA+'s local views of each image: smaller crops (area scale local_scale_min to
    # local_scale_max) at local_size px, with the global views' jitter, pulled by the
    # multi-view term to the mean of the global views; they predict no caption
    local_views: int = 0
    local_size: int = 96
    local_scale_min: float = 0.05
    local_scale_max: float = 0.4
    max_failure_rate: float = 0.1
    # How an epoch reads the shards: "resampled" draws them with replacement (webdataset's
    # ResampledShards, open_clip's --dataset-resampled), "passes" reads each of the rank's
    # shards once in a seeded order (open_clip's default), as exact epochs over a small set.
    sampling: str = "resampled"
    # The stream is endless; an "epoch" is this many samples, after which the order is redrawn
    # from (seed, epoch). None: the manifest's size. With "passes" a rank whose shards run out
    # before the epoch's batches do starts another pass. It bounds what a resumed webdataset
    # stream reads again (undecoded) before its position: at most one epoch; an epoch of one
    # checkpoint interval (recipes.epochs_end_at_checkpoints) reads nothing again.
    epoch_samples: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    min_lr: float = 2e-5
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 1000
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay)
    decay_fraction: float = 0.2  # wsd: the last fraction of steps decays linearly to min_lr
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off (as in DeepSpeed)
    # the text tower and its projection learn at this multiple of lr (1: as the image side)
    text_lr_scale: float = 1.0


@dataclass(frozen=True)
class DistConfig:
    """How the global batch (`data.batch_size`) is spread: over ranks, then over `grad_accum`
    micro-batches per rank (both engines accumulate). ZeRO acts only under DeepSpeed,
    SyncBatchNorm only with more than one rank; activation checkpointing (recompute the ViT and
    GPT-2 blocks in backward) and `compile` work under both engines."""

    zero_stage: int = 0
    grad_accum: int = 1
    activation_checkpointing: bool = False
    # torch.compile both towers' forward (inductor), in place: parameter names, checkpoints and
    # resume are unchanged. Off by default: the first step pays the compile (~1 min for the micro
    # towers on a 2-core CPU), and the GPU gain is not yet measured (bench/gpu_check.sh runs it).
    compile: bool = False
    sync_batchnorm: bool = True  # only when world size > 1
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    timeout_s: int = 600
    # DeepSpeed JSON with the keys levl does not derive (buckets, overlap, stage-3 knobs); None:
    # cluster/deepspeed/zero{zero_stage}.json of the levl checkout (see ds_config.py).
    deepspeed_config: str | None = None


@dataclass(frozen=True)
class LogConfig:
    """Where metrics go besides RUN/metrics.jsonl, which is always written."""

    tensorboard: bool = True  # RUN/tensorboard/ event files
    wandb_project: str | None = None  # set to log to W&B too (WANDB_MODE=offline: RUN/wandb/)
    wandb_entity: str | None = None
    # The device's dense peak for the run's matmul precision (bf16, or tf32/fp32 for an fp32
    # run), for MFU; None: levl_train.flops' tables of known GPUs.
    peak_tflops: float | None = None
    # Collapse flag: effective rank of Z_V or Z_T below collapse_fraction x min(micro-batch, E)
    # for collapse_steps steps (levl_train.collapse)
    collapse_fraction: float = 0.1
    collapse_steps: int = 50


@dataclass(frozen=True)
class TrainConfig:
    recipe: str
    model: ModelConfig
    objective: ObjectiveConfig
    preprocess: Preprocess
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    log: LogConfig = field(default_factory=LogConfig)
    engine: str = "torch"  # torch (one process) | deepspeed (1..N ranks, ZeRO)
    deterministic: bool = False  # torch.use_deterministic_algorithms: bitwise-reproducible runs
    steps: int = 1000
    seed: int = 0
    tokenizer: str = "offline"
    device: str = "auto"  # auto | cpu | cuda
    # bf16: autocast on CUDA (weights fp32); fp32: no autocast; fp64: float64 weights and math,
    # ~3x slower: for runs that must give the same numbers on every CPU (the golden curve).
    precision: str = "bf16"
    # The CPU trains in fp32 even with precision=bf16 unless this asks for bf16 autocast there
    # too: CPU bf16 is slow on most CPUs and would move the CPU tests off their fp32 numbers.
    cpu_bf16: bool = False
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    log_every: int = 10
    ckpt_every: int = 500
    keep_last: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NESTED = {
    "model": ModelConfig,
    "model.vision": VisionConfig,
    "model.text": TextConfig,
    "model.heads": HeadsConfig,
    "objective": ObjectiveConfig,
    "preprocess": Preprocess,
    "data": DataConfig,
    "optim": OptimConfig,
    "dist": DistConfig,
    "log": LogConfig,
}


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from its `to_dict()` form (config.json, checkpoint metadata)."""
    return _build(TrainConfig, data, prefix="")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainError(f"config key {prefix}{unknown[0]} is unknown (known: {sorted(known)})")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get(f"{prefix}{name}")
        if nested is not None and isinstance(value, dict):
            value = _build(nested, value, prefix=f"{prefix}{name}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


_CHOICES = {
    ("optim", "schedule"): ("cosine", "wsd"),
    ("", "precision"): ("bf16", "fp32", "fp64"),
    ("", "device"): ("auto", "cpu", "cuda"),
    ("", "engine"): ("torch", "deepspeed"),
    ("dist", "zero_stage"): (0, 1, 2, 3),
    ("dist", "backend"): ("auto", "gloo", "nccl"),
    ("data", "sampling"): ("resampled", "passes"),
}
_POSITIVE = (("", "steps"), ("", "log_every"), ("", "ckpt_every"), ("data", "batch_size"),
             ("optim", "lr"), ("dist", "grad_accum"), ("dist", "timeout_s"), ("", "keep_last"),
             ("log", "collapse_steps"))


def check_config(cfg: TrainConfig) -> None:
    """Refuse values no run could use before anything starts (not at step 1000)."""
    check_finite(cfg)
    check_flags(cfg)
    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section) if section else cfg, key)
        if value not in choices:
            raise TrainError(f"{_dotted(section, key)}={value!r} is unknown; use one of "
                             f"{', '.join(map(str, choices))}")
    for section, key in _POSITIVE:
        value = getattr(getattr(cfg, section) if section else cfg, key)
        if value <= 0:
            raise TrainError(f"{_dotted(section, key)}={value} must be positive")
    if cfg.data.epoch_samples is not None and cfg.data.epoch_samples < cfg.data.batch_size:
        raise TrainError(f"data.epoch_samples={cfg.data.epoch_samples} is smaller than one "
                         f"batch ({cfg.data.batch_size}); raise it or set it to none")
    check_data(cfg.data)
    check_views(cfg)
    if not 0 <= cfg.log.collapse_fraction <= 1:
        raise TrainError(f"log.collapse_fraction={cfg.log.collapse_fraction} must be in [0, 1] "
                         "(0 turns the collapse flag off)")
    if cfg.log.peak_tflops is not None and cfg.log.peak_tflops <= 0:
        raise TrainError(f"log.peak_tflops={cfg.log.peak_tflops} must be positive (or none)")
    check_schedule(cfg)
    check_predictors(cfg)
    if cfg.optim.grad_clip < 0:
        raise TrainError(f"optim.grad_clip={cfg.optim.grad_clip} must be >= 0 (0 turns "
                         "clipping off)")
    if cfg.optim.text_lr_scale < 0:
        raise TrainError(f"optim.text_lr_scale={cfg.optim.text_lr_scale} must be >= 0 (0 "
                         "freezes the text tower)")
    if cfg.precision == "fp64" and cfg.engine != "torch":
        raise TrainError("precision=fp64 runs on engine=torch only (DeepSpeed reduces no "
                         "float64 gradients); set engine=torch or precision=fp32")
    if cfg.cpu_bf16 and cfg.precision != "bf16":
        raise TrainError(f"cpu_bf16=true asks for bf16 on the CPU but precision="
                         f"{cfg.precision!r}; set precision=bf16 or cpu_bf16=false")


def check_finite(node: Any, prefix: str = "") -> None:
    """Every float in the config tree is finite: NaN passes each range check below (`nan <= 0`
    is false) and inf passes `> 0`, so a config.json or recipe holding one must fail here."""
    for item in dataclasses.fields(node):
        value, key = getattr(node, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            check_finite(value, f"{key}.")
            continue
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise TrainError(f"{key}={value} must be a finite number")


def check_flags(node: Any, prefix: str = "") -> None:
    """Every bool key holds a bool: a config.json saying `"compile": "yes"` would otherwise be
    truthy everywhere it is read and be written back as a string."""
    for item in dataclasses.fields(node):
        value, key = getattr(node, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            check_flags(value, f"{key}.")
        elif item.type in ("bool", bool) and not isinstance(value, bool):
            raise TrainError(f"{key}={value!r} must be true or false")


def check_predictors(cfg: TrainConfig) -> None:
    """Predictor MLPs exactly when the objective trains them: an InfoNCE run must not build,
    checkpoint and hand to evaluation two MLPs left at their random init."""
    wanted = uses_predictors(cfg.objective)
    if cfg.model.heads.predictors != wanted:
        what = "trains predictors" if wanted else "trains no predictors"
        raise TrainError(f"model.heads.predictors={str(cfg.model.heads.predictors).lower()} but "
                         f"objective {cfg.objective.name} (use_predictors="
                         f"{str(cfg.objective.use_predictors).lower()}) {what}; set "
                         f"model.heads.predictors={str(wanted).lower()}")


def with_objective_model(cfg: TrainConfig, explicit: Collection[str] = ()) -> TrainConfig:
    """The recipe's model as its objective trains it; `explicit` holds the keys the user set.
    Predictors are built exactly when the objective trains them (unless
    model.heads.predictors is set). A switch of objective.name also takes that objective's
    default init (objective_init; unless model.init is set), so
    `--set objective.name=infonce` alone gives open_clip's baseline: no predictors, open_clip's
    init. A recipe's own init is kept otherwise."""
    model = cfg.model
    if "model.heads.predictors" not in explicit:
        model = dataclasses.replace(model, heads=dataclasses.replace(
            model.heads, predictors=uses_predictors(cfg.objective)))
    if "objective.name" in explicit and "model.init" not in explicit:
        model = dataclasses.replace(model, init=objective_init(cfg.objective))
    return dataclasses.replace(cfg, model=model)


def check_views(cfg: TrainConfig) -> None:
    """Several views are LeVLJEPA's (a contrastive loss would need a view-aware batch), and the
    multi-view term needs them."""
    if cfg.data.views < 1:
        raise TrainError(f"data.views={cfg.data.views} must be >= 1")
    if cfg.data.views > 1 and cfg.objective.name != "levljepa":
        raise TrainError(f"data.views={cfg.data.views} is for objective.name=levljepa, not "
                         f"{cfg.objective.name}; set data.views=1")
    for where, key, value in (("data", "clean_views", cfg.data.clean_views),
                              ("objective", "caption_views", cfg.objective.caption_views)):
        if not 0 <= value <= cfg.data.views:
            raise TrainError(f"{where}.{key}={value} must be between 0 and data.views="
                             f"{cfg.data.views}")
    if cfg.data.clean_views > 0 and cfg.data.views == 1:
        raise TrainError(f"data.clean_views={cfg.data.clean_views} needs several views of each "
                         "image; set data.views=2 (or more)")
    if cfg.objective.lambda_multi > 0 and cfg.data.views == 1 and not cfg.data.local_views:
        raise TrainError(f"objective.lambda_multi={cfg.objective.lambda_multi} needs several "
                         "views of each image; set data.views=2 (or more) or data.local_views")
    check_local_views(cfg)


def check_local_views(cfg: TrainConfig) -> None:
    """Local views are augmented crops the multi-view term uses, tiled into frames of the
    global size, and whole patches."""
    data, size, patch = cfg.data, cfg.preprocess.size, cfg.model.vision.patch_size
    if data.local_views < 0:
        raise TrainError(f"data.local_views={data.local_views} must be >= 0")
    if not data.local_views:
        return
    if cfg.objective.name != "levljepa" or not data.augment:
        raise TrainError(f"data.local_views={data.local_views} is for objective.name=levljepa "
                         "with data.augment=true; set data.local_views=0")
    if cfg.objective.lambda_multi <= 0:
        raise TrainError(f"data.local_views={data.local_views} only enter the multi-view "
                         "term; set objective.lambda_multi > 0")
    if not (patch <= data.local_size <= size and data.local_size % patch == 0):
        raise TrainError(f"data.local_size={data.local_size} must be a multiple of the patch "
                         f"size {patch} and at most the image size {size}")
    if not 0 < data.local_scale_min <= data.local_scale_max <= 1:
        raise TrainError(f"data.local_scale_min={data.local_scale_min} and "
                         f"data.local_scale_max={data.local_scale_max} must satisfy "
                         "0 < min <= max <= 1")


def check_data(data: DataConfig) -> None:
    """Data values the loader would otherwise meet as a traceback (or not at all)."""
    if not 0 < data.crop_scale_min <= 1:
        raise TrainError(f"data.crop_scale_min={data.crop_scale_min} must be in (0, 1]")
    if not 0 <= data.hue_jitter <= 0.5:
        raise TrainError(f"data.hue_jitter={data.hue_jitter} must be in [0, 0.5] (a hue shift "
                         "of half the colour wheel at most)")
    if not 0 <= data.grayscale_p <= 1:
        raise TrainError(f"data.grayscale_p={data.grayscale_p} must be in [0, 1]")
    if not 0 <= data.max_failure_rate <= 1:
        raise TrainError(f"data.max_failure_rate={data.max_failure_rate} must be in [0, 1]")
    for key in ("num_workers", "shuffle_buffer"):
        if getattr(data, key) < 0:
            raise TrainError(f"data.{key}={getattr(data, key)} must be >= 0")


def check_schedule(cfg: TrainConfig) -> None:
    """A wsd decay that starts inside the warmup would jump from the warmup's ramp into the
    middle of the decay: refuse it rather than train on a schedule nobody drew."""
    optim = cfg.optim
    if optim.schedule != "wsd":
        return
    if not 0 < optim.decay_fraction <= 1:
        raise TrainError(f"optim.decay_fraction={optim.decay_fraction} must be in (0, 1]")
    decay_steps = max(1, round(cfg.steps * optim.decay_fraction))
    if optim.warmup_steps + decay_steps > cfg.steps:
        raise TrainError(
            f"optim.schedule=wsd: warmup ({optim.warmup_steps} steps) and decay ({decay_steps} "
            f"= {optim.decay_fraction} x {cfg.steps} steps) overlap; lower optim.warmup_steps or "
            "optim.decay_fraction")


def require_manifest(cfg: TrainConfig) -> str:
    """The run's manifest path; a recipe run without `--data` is refused before anything."""
    if cfg.data.manifest is None:
        raise TrainError(f"recipe {cfg.recipe} has no data; pass --data MANIFEST")
    return cfg.data.manifest


def micro_batch_size(cfg: TrainConfig, world_size: int) -> int:
    """Per-rank micro-batch; refuses a global batch that does not split evenly (a silent
    round-down would change the batch, and so the loss, without anyone noticing)."""
    per_step = world_size * cfg.dist.grad_accum
    if cfg.data.batch_size % per_step:
        raise TrainError(
            f"data.batch_size={cfg.data.batch_size} is not divisible by world size {world_size} "
            f"x dist.grad_accum {cfg.dist.grad_accum}; use a multiple of {per_step}")
    return cfg.data.batch_size // per_step


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `section.key=value` overrides, parsing each value as the field's declared type."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TrainError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=1e-4")
        try:
            cfg = set_from_text(cfg, key.strip(), raw.strip())
        except OverrideError as error:
            raise TrainError(str(error)) from None
    return cfg
