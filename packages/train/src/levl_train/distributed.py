"""Who this process is in a multi-process run, and the process group it joins.

Ranks come from the launcher's environment: torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) or SLURM's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, with
MASTER_ADDR/MASTER_PORT exported by the submission layer). A plain `levl-train run` is rank 0
of 1 and never touches torch.distributed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from levl_train.errors import TrainError

EXTENSIONS_CACHE = Path("~/.cache/levl/torch_extensions").expanduser()

# The store of the group this process joined, held from joining until it leaves (`shutdown`),
# or, on a failed run's rank 0, until the process ends (`shutdown(keep_store=True)`): its peers
# wait for that (`failures.outlive_rank0`). Held from the start because torch's abort of an NCCL
# group (`failures.abort_blocked_collectives`) drops torch's own references, which closed the
# store under them. torch's default store is multi-tenant: a later group on the same port
# would reuse it, old keys and all, so joining a group releases it first.
_STORE: list[object] = []
_joined = False  # in a group: still true after an abort, when dist.is_initialized() is not


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def multi(self) -> bool:
        return self.world_size > 1


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """torchrun's variables win over SLURM's (torchrun inside an allocation sets its own)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        keys = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
    else:
        return DistEnv()
    try:
        rank, world, local = (int(env.get(key, "0")) for key in keys)
        port = int(env.get("MASTER_PORT", "29500"))
    except ValueError:
        raise TrainError(f"launcher variables {', '.join(keys)} / MASTER_PORT must be integers "
                         f"(got {[env.get(k) for k in keys]}); check the launch command") from None
    if world > 1 and "MASTER_ADDR" not in env:
        raise TrainError(f"{keys[1]}={world} but MASTER_ADDR is unset; launch with torchrun or "
                         "export MASTER_ADDR and MASTER_PORT")
    if not 0 <= rank < world:
        raise TrainError(f"{keys[0]}={rank} is outside 0..{world - 1}; check the launcher")
    return DistEnv(rank, world, local, env.get("MASTER_ADDR", "127.0.0.1"), port)


def cuda_device_index(env: DistEnv, visible: int | None = None) -> int:
    """The CUDA device this rank drives. A site that binds one GPU per task (`--gpus-per-task=1`,
    `--gpu-bind=single:1`, or a prolog setting CUDA_VISIBLE_DEVICES per task) shows each task
    exactly one device, cuda:0, whatever its local rank; otherwise every task on a node sees the
    node's GPUs and takes cuda:LOCAL_RANK."""
    count = torch.cuda.device_count() if visible is None else visible
    if count == 1:
        return 0
    if env.local_rank >= count:
        raise TrainError(f"local rank {env.local_rank} but this task sees {count} GPU(s); start "
                         "one task per GPU (--gpus-per-node = tasks per node) or bind one GPU "
                         "per task")
    return env.local_rank


def use_extensions_cache() -> None:
    """DeepSpeed JIT-compiles its shared-memory comm op (~45 s on 2 cores) on first use; a
    persistent TORCH_EXTENSIONS_DIR makes that a once-per-environment cost, not a per-run one.
    One dir per Python environment: the build flags name the venv's torch include paths, so two
    venvs sharing a dir (a checkout and a CI clone) rebuild each other's op on every launch."""
    venv = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS_CACHE / venv))
    # "No CUDA runtime is found" on every CPU launch: noise before a one-line `error:`.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    Path(os.environ["TORCH_EXTENSIONS_DIR"]).mkdir(parents=True, exist_ok=True)


def backend_for(device: torch.device, requested: str) -> str:
    if requested != "auto":
        if requested == "nccl" and device.type != "cuda":
            raise TrainError("dist.backend=nccl needs CUDA; use --set dist.backend=gloo on the CPU")
        return requested
    return "nccl" if device.type == "cuda" else "gloo"


def init_process_group(env: DistEnv, backend: str, timeout_s: int) -> None:
    """Join the group through DeepSpeed's comm layer (it also initialises torch.distributed),
    so DeepSpeed and our own collectives (SIGReg, SyncBatchNorm) share one group."""
    global _joined
    if dist.is_initialized():
        return
    _STORE.clear()
    use_extensions_cache()
    os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world_size),
                      LOCAL_RANK=str(deepspeed_local_rank(env)), MASTER_ADDR=env.master_addr,
                      MASTER_PORT=str(env.master_port))
    quiet_collective_deprecations()
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                               timeout=timedelta(seconds=timeout_s), rank=env.rank,
                               world_size=env.world_size, distributed_port=env.master_port)
    _STORE.append(dist.distributed_c10d._get_default_store())
    _joined = True


def in_group() -> bool:
    """Whether this process joined a group and has not left it (`shutdown`)."""
    return _joined or dist.is_initialized()


def deepspeed_local_rank(env: DistEnv) -> int:
    """DeepSpeed takes LOCAL_RANK as the index of its accelerator (`set_device(LOCAL_RANK)`
    whenever CUDA is present, even for a CPU run), so on a task bound to one GPU it must read 0;
    without CUDA it stays the rank within the node (the CPU shared-memory all-reduce uses it)."""
    return cuda_device_index(env) if torch.cuda.is_available() else env.local_rank


def quiet_collective_deprecations() -> None:
    """torch 2.14 marks the autograd-aware `torch.distributed.nn.functional.all_reduce` (SIGReg,
    GlobalBatchNorm1d) and DeepSpeed's all_gather_into_tensor deprecated, once per call site
    and rank; the replacements are not autograd-aware yet, so silence the noise, not the use."""
    for message in (r".*torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                    r".*all_gather_into_tensor` is deprecated"):
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown(keep_store: bool = False) -> None:
    """Leave the process group (NCCL communicators, gloo sockets, the store): `train` reaches
    this on every way out, errors included (`failures.stop_together`). With `keep_store`, the
    store this process hosts stays up until the process ends (or it joins a group again):
    a failing run's other ranks wait for exactly that (`failures.outlive_rank0`)."""
    global _joined
    _joined = False
    if dist.is_initialized():
        dist.destroy_process_group()
    if not keep_store:
        _STORE.clear()
