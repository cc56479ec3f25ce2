"""What `levl-train submit` refuses before anything is queued or written.

A SLURM job that cannot succeed costs more than a refusal: it waits in the queue (for 64 GPUs,
perhaps hours), then fails in its first minute, or worse, is requeued on every time limit
without ever reaching a checkpoint until submitit gives up. Each check here is one `error:`
line naming the setting and the fix, raised before the run dir is created.

The time-limit rule. SLURM signals the job SIGNAL_DELAY_S before its limit; submitit then
requeues it, and the next attempt resumes from the last checkpoint, so an attempt makes progress
only if it reaches a checkpoint before the signal. With a known step time (`--step-time`, or
measured: the latest `step_time_s` in the metrics.jsonl of the run being continued) the job
needs

    STARTUP_S + min(ckpt_every, steps) × step_time  <=  time_min × 60 − SIGNAL_DELAY_S

where STARTUP_S allows for start-up (imports, DeepSpeed, resuming the data stream) and the
checkpoint write. Without a step time no interval can be checked: the limit must still leave
time after start-up and the signal (time_min × 60 > SIGNAL_DELAY_S + STARTUP_S), and submit says
that it did not check the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from levl_data.loader import shards_of_rank
from levl_data.manifest import Manifest, read_manifest
from levl_train.config import TrainConfig, check_config, micro_batch_size, require_manifest
from levl_train.errors import TrainError
from levl_train.profiles import ClusterProfile
from levl_train.rundir import metrics_records

SIGNAL_DELAY_S = 120  # USR2 this long before the time limit (submit.build_executor)
STARTUP_S = 300
EXAMPLE_GPU_PROFILE = "cluster/profiles/example-gpu.toml"


@dataclass(frozen=True)
class StepTime:
    seconds: float
    source: str  # where the figure comes from, for the messages


def check_submission(cfg: TrainConfig, profile: ClusterProfile, gpus_per_node: int,
                     world_size: int, step_time: StepTime | None) -> list[str]:
    """Every refusal, cheapest first; returns the notes worth printing (nothing refused)."""
    check_config(cfg)
    micro_batch_size(cfg, world_size)
    check_devices(cfg, profile, gpus_per_node)
    manifest = check_manifest(cfg)
    check_passes(cfg, manifest, world_size)
    notes = [check_time_limit(cfg, profile, step_time),
             resume_reads_note(cfg, world_size, manifest)]
    return [note for note in notes if note]


def check_devices(cfg: TrainConfig, profile: ClusterProfile, gpus_per_node: int) -> None:
    """GPUs asked of a site without them would wait in the queue for nodes that do not exist;
    a CUDA run on CPU-only tasks fails on its first line; a CPU run on GPU nodes idles them."""
    if gpus_per_node < 0:
        raise TrainError(f"--gpus-per-node must be >= 0, got {gpus_per_node}")
    site = f"profile {profile.name!r} (partition {profile.partition or 'default'})"
    if gpus_per_node and not profile.gpus_per_node:
        raise TrainError(f"--gpus-per-node {gpus_per_node} but {site} has no GPUs "
                         "(gpus_per_node = 0); pass --profile with a GPU site (template: "
                         f"{EXAMPLE_GPU_PROFILE}) or drop --gpus-per-node")
    if gpus_per_node > profile.gpus_per_node:
        raise TrainError(f"--gpus-per-node {gpus_per_node} but the nodes of {site} have "
                         f"{profile.gpus_per_node}; ask for at most {profile.gpus_per_node} "
                         "and more --nodes")
    if not gpus_per_node and (cfg.device == "cuda" or cfg.dist.backend == "nccl"):
        raise TrainError(f"device={cfg.device}, dist.backend={cfg.dist.backend} needs GPUs but "
                         f"the job has none ({site}); pass --gpus-per-node and a GPU profile, "
                         "or --set device=cpu --set dist.backend=auto")
    if gpus_per_node and cfg.device == "cpu":
        raise TrainError(f"device=cpu would leave the job's {gpus_per_node} GPU(s) per node "
                         "idle; drop --set device=cpu or pass --gpus-per-node 0")


def check_manifest(cfg: TrainConfig) -> Manifest:
    """The job's data, read and validated now with the loader's own reader (schema,
    fingerprint, sample count, every shard present): a bad path fails here, not in the queue."""
    manifest = read_manifest(require_manifest(cfg))
    epoch = cfg.data.epoch_samples or manifest.num_samples
    if epoch < cfg.data.batch_size:
        raise TrainError(f"manifest {manifest.path} holds {manifest.num_samples} samples, less "
                         f"than one global batch (data.batch_size={cfg.data.batch_size}); "
                         "lower data.batch_size or write more data")
    return manifest


def check_passes(cfg: TrainConfig, manifest: Manifest, world_size: int) -> None:
    """`data.sampling=passes` reads each rank's own shards, split again over its loader workers,
    each of which batches only its own samples: a rank none of whose workers can fill a
    micro-batch, even with its largest shards, never gives a batch, and its job would fail at
    the first step, after the queue. (Which shards a worker gets follows each pass's shuffled
    order, so this refuses only what fails in every order.)"""
    if cfg.data.sampling != "passes" or manifest.data["format"] == "ffcv":
        return
    micro, workers = micro_batch_size(cfg, world_size), max(cfg.data.num_workers, 1)
    for rank in range(world_size):
        sizes = sorted((shard.num_samples for shard in
                        shards_of_rank(manifest.shards, rank, world_size)), reverse=True)
        luckiest = sum(sizes[:math.ceil(len(sizes) / workers)])
        if luckiest < micro:
            split = f", split over {workers} loader workers," if workers > 1 else ""
            raise TrainError(
                f"data.sampling=passes splits the {len(manifest.shards)} shards of "
                f"{manifest.path} over {world_size} ranks: rank {rank}'s {len(sizes)} shards"
                f"{split} can fill no worker's micro-batch of {micro} (at most {luckiest}); "
                "write more, smaller shards, lower data.num_workers or use "
                "--set data.sampling=resampled")


def resume_reads_note(cfg: TrainConfig, world_size: int, manifest: Manifest) -> str | None:
    """A resumed webdataset stream reads again (without decoding) its rank's samples of the
    epoch before the checkpoint's position: at most one epoch. Worth a note when an epoch of
    resampled shards is longer than a checkpoint interval, so that a resume can read more than
    an interval trained (the B/16 recipes' `epochs_end_at_checkpoints` makes every checkpoint
    an epoch's end). Not for `passes`, whose epochs are passes over the data by design."""
    if (manifest.data["format"] == "ffcv"  # an ffcv file's resume reads nothing before it
            or cfg.data.sampling != "resampled"  # a shorter epoch would cut every pass short
            or cfg.steps <= cfg.ckpt_every):  # no checkpoint to resume from before the end
        return None
    epoch = cfg.data.epoch_samples or manifest.num_samples
    per_rank_batch = micro_batch_size(cfg, world_size)
    epoch_batches = epoch // (per_rank_batch * world_size)
    if epoch_batches <= cfg.ckpt_every * cfg.dist.grad_accum:
        return None
    return (f"note: an epoch (data.epoch_samples={epoch}) is longer than a checkpoint interval "
            f"(ckpt_every={cfg.ckpt_every} steps of {cfg.data.batch_size}): a resume reads up to "
            f"{(epoch_batches - 1) * per_rank_batch} samples a rank again before its first "
            f"batch; --set data.epoch_samples={cfg.ckpt_every * cfg.data.batch_size} makes each "
            "checkpoint an epoch's end")


def check_time_limit(cfg: TrainConfig, profile: ClusterProfile,
                     step_time: StepTime | None) -> str | None:
    """The rule in the module docstring; returns a note when no step time is known."""
    limit_s = profile.time_min * 60
    usable_s = limit_s - SIGNAL_DELAY_S - STARTUP_S
    budget = (f"each attempt has {profile.time_min} min minus {SIGNAL_DELAY_S // 60} min before "
              f"the requeue signal minus {STARTUP_S // 60} min for start-up and the checkpoint")
    if usable_s <= 0:
        floor_min = (SIGNAL_DELAY_S + STARTUP_S) // 60 + 1
        raise TrainError(f"time limit {profile.time_min} min leaves no time to train ({budget}); "
                         f"pass --time {floor_min} or more")
    interval = min(cfg.ckpt_every, cfg.steps)
    if step_time is None:
        return (f"note: no step time known, so ckpt_every={interval} was not checked against the "
                f"{profile.time_min} min limit; pass --step-time SECONDS to check it")
    need_s = interval * step_time.seconds
    if need_s > usable_s:
        fits = max(1, math.floor(usable_s / step_time.seconds))
        raise TrainError(
            f"time limit {profile.time_min} min cannot reach a checkpoint: ckpt_every={interval} "
            f"steps × {step_time.seconds:g} s/step ({step_time.source}) take "
            f"{need_s / 60:.0f} min, but {budget}, so every attempt would be requeued before "
            f"its first checkpoint; pass a longer --time or --set ckpt_every={fits} (or fewer)")
    return None


def known_step_time(stated_s: float | None, run_dir: Path) -> StepTime | None:
    """`--step-time` if given, else the run's own measurement when submit continues a run."""
    if stated_s is not None:
        if not (math.isfinite(stated_s) and stated_s > 0):
            raise TrainError(f"--step-time must be a positive number of seconds, got {stated_s}")
        return StepTime(stated_s, "--step-time")
    measured = measured_step_time(run_dir)
    return StepTime(measured, f"measured in {run_dir}/metrics.jsonl") if measured else None


def measured_step_time(run_dir: Path) -> float | None:
    """The latest `step_time_s` logged (wall time per step, checkpoints included)."""
    for record in metrics_records(run_dir):
        value = record.get("step_time_s")
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            return float(value)
    return None
