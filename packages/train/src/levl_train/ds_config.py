"""The DeepSpeed config: a ZeRO file from cluster/deepspeed/ merged with what the recipe decides.

The file (`zero{stage}.json`, or `dist.deepspeed_config`) holds only what levl does not derive:
bucket sizes, communication overlap, stage-3 prefetch/persistence knobs, offload. Everything the
recipe already decides is set here and refused in the file, so there is never a second source
of truth for the batch, the optimizer or the precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from levl_model.jsontext import parse_json
from levl_train.config import TrainConfig
from levl_train.errors import TrainError

CONFIG_DIR = Path("cluster") / "deepspeed"
# DeepSpeed keys levl sets from the recipe -> the recipe field that decides them.
OWNED_KEYS = {
    "train_batch_size": "data.batch_size",
    "train_micro_batch_size_per_gpu": "data.batch_size / ranks / dist.grad_accum",
    "gradient_accumulation_steps": "dist.grad_accum",
    "gradient_clipping": "optim.grad_clip",
    "bf16": "precision (DeepSpeed's torch_autocast: weights stay fp32)",
    "fp16": "precision",
    "torch_autocast": "precision",
    "optimizer": "optim.* (levl passes its own AdamW)",
    "scheduler": "optim.* (levl sets the LR every step)",
    "zero_allow_untested_optimizer": "levl (its torch AdamW under ZeRO)",
}


# The layers whose gradients DeepSpeed reduces in bf16 under torch_autocast: every matmul of the
# ViT (Linear, the patch Conv2d) and of GPT-2 (transformers' Conv1D) and GPT-2's token table
# (itself ~39M): 240.8M of ViT-B + GPT-2's 241.0M parameters (bench/step_changes.py); norms, the
# ViT's class and position embeddings and the loss scalars keep fp32 reductions.
BF16_REDUCED_MODULES = ("torch.nn.Linear", "torch.nn.Conv2d", "torch.nn.Embedding",
                        "transformers.pytorch_utils.Conv1D")


def default_config_path(stage: int, anchors: list[Path] | None = None) -> Path:
    """cluster/deepspeed/zero{stage}.json in the first ancestor of the running code (an editable
    checkout, or a submission's RUN/code/NAME/ snapshot) or of the working directory that has one."""
    anchors = anchors or [Path(__file__).resolve().parent, Path.cwd()]
    name = CONFIG_DIR / f"zero{stage}.json"
    for anchor in anchors:
        for directory in (anchor, *anchor.parents):
            if (directory / name).is_file():
                return directory / name
    raise TrainError(f"no DeepSpeed config {name} found above {anchors[0]}; run from the levl "
                     "checkout or pass --set dist.deepspeed_config=FILE")


def read_zero_file(path: Path, stage: int) -> dict[str, Any]:
    """The file's keys, refused when it sets a key the recipe owns or another ZeRO stage."""
    try:
        data = parse_json(Path(path).read_bytes())
    except OSError as exc:
        raise TrainError(f"DeepSpeed config {path}: cannot read it ({exc.strerror}); fix "
                         "dist.deepspeed_config") from None
    except ValueError as exc:
        raise TrainError(f"DeepSpeed config {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TrainError(f"DeepSpeed config {path}: expected a JSON object")
    owned = sorted(set(data) & set(OWNED_KEYS))
    if owned:
        raise TrainError(f"DeepSpeed config {path} sets {owned[0]}, which levl derives from "
                         f"{OWNED_KEYS[owned[0]]}; remove it from the file")
    zero = data.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise TrainError(f"DeepSpeed config {path}: zero_optimization must be an object")
    if zero.get("stage", stage) != stage:
        raise TrainError(f"DeepSpeed config {path} is for ZeRO stage {zero['stage']} but "
                         f"dist.zero_stage={stage}; use a file for stage {stage}")
    return data


def config_path(cfg: TrainConfig) -> Path:
    """`dist.deepspeed_config` when set, else the checkout's file for the recipe's ZeRO stage."""
    if cfg.dist.deepspeed_config:
        return Path(cfg.dist.deepspeed_config)
    return default_config_path(cfg.dist.zero_stage)


def deepspeed_config(cfg: TrainConfig, micro_batch: int, world_size: int,
                     bf16: bool = False) -> dict[str, Any]:
    """The whole config handed to deepspeed.initialize: the ZeRO file plus the recipe's keys.

    `bf16` (the run autocasts: `engine.uses_bf16`) turns on DeepSpeed's own `torch_autocast`:
    the forward runs under bf16 autocast, the weights (and so the optimizer's master copy and
    model.safetensors) stay fp32, and under ZeRO the gradients of Linear/Conv weights (nearly
    all of them) are reduced in bf16, half the bytes of an fp32 all-reduce. Its `bf16` mode
    (bf16 weights) stays off: BatchNorm's fp32 statistics and the loss scalars want fp32."""
    stage = cfg.dist.zero_stage
    data = read_zero_file(config_path(cfg), stage)
    return {
        **data,
        "zero_optimization": {**data.get("zero_optimization", {}), "stage": stage},
        "train_batch_size": micro_batch * world_size * cfg.dist.grad_accum,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": cfg.dist.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16": {"enabled": False},
        "torch_autocast": {"enabled": bf16, "dtype": "bfloat16",
                           "lower_precision_safe_modules": list(BF16_REDUCED_MODULES)},
        "zero_allow_untested_optimizer": True,
    }
