"""The training loop, shared by both engines: fetch micro-batches, step, log, checkpoint.

Setup lives in `setup.py`, the optimizer step in the engines (`engine.py`, `ds_engine.py`),
train state in `resume.py`; this module only sequences them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from levl_model.checkpoint import build_metadata, read_tensors, save_checkpoint
from levl_train import __version__
from levl_train.collapse import CollapseWatch, describe, weighted_terms
from levl_train.config import TrainConfig, config_from_dict
from levl_train.distributed import barrier, dist_env
from levl_train.engine import MicroBatch, StepOutput
from levl_train.errors import TrainError
from levl_train.failures import stop_together
from levl_train.metrics import effective_rank, matched_vs_shuffled_cosine
from levl_train.nonfinite import NonFiniteWatch
from levl_train.resume import (
    POSITION_FILE,
    Position,
    check_layout,
    discard_unfinished,
    latest_train_state,
    read_position,
    read_reader,
    read_rng,
    set_rng_state,
    write_position,
    write_reader,
    write_rng,
)
from levl_train.rundir import CONFIG_FILE, read_config, write_json_atomic
from levl_train.setup import Run, build_run
from levl_train.sinks import MetricSinks
from levl_train.skips import run_total, saved_total
from levl_train.throughput import ThroughputMeter, reduce_over_ranks


def micro_batches(run: Run, meter: ThroughputMeter) -> list[MicroBatch]:
    """The step's grad_accum micro-batches, tokenized and on the device: every copy from pinned
    memory and non-blocking (a copy from pageable memory makes the host wait for the device)."""
    batches = []
    for _ in range(run.cfg.dist.grad_accum):
        batch = next(run.stream)
        run.skipped.update(batch.get("skipped", {}))
        input_ids, attention_mask = run.tokenizer(batch["caption"])
        meter.count_text(attention_mask)
        batches.append(tuple(to_device(tensor, run.device) for tensor in
                             (batch["image"], input_ids, attention_mask)))
    return batches


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type != "cuda":
        return tensor
    pinned = tensor if tensor.is_pinned() else tensor.pin_memory()
    return pinned.to(device, non_blocking=True)


def diagnostics(embeddings: dict) -> dict[str, float]:
    """Alignment of Z_V with Z_T (what contrastive losses train) and of pred_V(Z_V) with Z_T
    (what LeVLJEPA trains: its two spaces meet only through the predictor), when it has one."""
    matched, shuffled = matched_vs_shuffled_cosine(embeddings["z_v"], embeddings["z_t"])
    figures = {"cos_matched": matched, "cos_shuffled": shuffled}
    if "pred_v" in embeddings:
        figures["pred_cos_matched"], figures["pred_cos_shuffled"] = matched_vs_shuffled_cosine(
            embeddings["pred_v"], embeddings["z_t"])
    return {**figures, "erank_v": effective_rank(embeddings["z_v"]),
            "erank_t": effective_rank(embeddings["z_t"])}


def mean_over_ranks(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss terms averaged over ranks: what data-parallel training minimises (each rank sees
    its own prediction terms, and its own SIGReg under sigreg_scope=local)."""
    names = sorted(terms)
    stacked = torch.stack([terms[name].double().reshape(()) for name in names])
    if dist.is_initialized() and dist.get_world_size() > 1:
        stacked = stacked.cpu() if dist.get_backend() == "gloo" else stacked
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(names, stacked.tolist(), strict=True))


def train(cfg: TrainConfig, out_dir: Path) -> Path:
    """Train `cfg` into `out_dir` (continuing it if it holds this run); returns the last
    checkpoint directory. On N ranks, one rank's failure stops them all with its message, and
    every rank leaves the process group on every way out (`stop_together`)."""
    with stop_together(dist_env()):
        run = build_run(cfg, out_dir)
        start = restore(run) if run.resuming else 0
        sinks = open_sinks(run, start)
        try:
            return train_steps(run, start, sinks)
        except BaseException:
            if sinks is not None:
                sinks.close()
                sinks = None
            discard_if_unstarted(run)
            raise
        finally:
            if sinks is not None:
                sinks.close()


def discard_if_unstarted(run: Run) -> None:
    """A new run that fails before its first step (its first batch is unreadable, say) leaves
    no stub run dir behind: the same command can simply be rerun. A killed run cannot get here
    and keeps its dir, which `run`/`resume` restart from step 0."""
    if run.mode == "new" and run.steps_done == 0 and run.env.is_main:
        run.run_dir.discard_new_run()


def train_steps(run: Run, start: int, sinks: MetricSinks | None) -> Path:
    """Steps `start`..cfg.steps: fetch, step, log every log_every, checkpoint every ckpt_every."""
    cfg = run.cfg
    meter = ThroughputMeter(cfg, run.device)
    last_ckpt = None
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.recipe, unit="step", dynamic_ncols=True,
               disable=not run.env.is_main)
    watch = CollapseWatch.for_run(cfg, run.stream.micro_batch)
    nonfinite = NonFiniteWatch(run.device)
    for step in range(start, cfg.steps):
        batches = meter.wait_for(micro_batches, run, meter)
        result = meter.compute(run.engine.step, batches, step)
        nonfinite.update(step, result.terms["loss"])
        done = run.steps_done = step + 1
        log_now = done % cfg.log_every == 0 or done == cfg.steps
        if log_now or done % cfg.ckpt_every == 0:
            nonfinite.check(run.device)  # never log or save what a NaN has touched
        if log_now:
            losses, perf = mean_over_ranks(result.terms), meter.interval()  # collectives
            skipped = run_total(run.skipped_before, run.skipped)
            if sinks is not None:
                record = log_record(run, done, result, losses, perf, skipped)
                collapse = watch.update(done, record, weighted_terms(cfg, losses))
                sinks.log({**record, "collapse": collapse} if collapse else record)
                bar.set_postfix(loss=f"{losses['loss']:.4f}",
                                **({"collapse": describe(collapse)} if collapse else {}))
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            last_ckpt = save(run, done)
        bar.update(1)
    bar.close()
    return last_ckpt or run.run_dir.checkpoint_dir(cfg.steps)


def log_record(run: Run, done: int, result: StepOutput, losses: dict, perf: dict,
               skipped: dict[str, int]) -> dict:
    """One metrics.jsonl line: losses averaged and `perf` summed over ranks, diagnostics of
    rank 0's last micro-batch, the bad samples every rank skipped since the run began."""
    return {"step": done, "samples_seen": done * run.cfg.data.batch_size, **losses,
            "lr": result.lr, "grad_norm": float(result.grad_norm),
            **diagnostics(result.embeddings),
            **perf, "skipped": skipped}


def open_sinks(run: Run, start: int) -> MetricSinks | None:
    """Rank 0's metric sinks (None on the other ranks), opened before the first step; a
    DeepSpeed run also records the exact config it was given. A collective: every rank learns
    whether rank 0 managed (alone, the others would wait out the timeout in their first
    collective), and a new run that cannot log (W&B refused to start, say) is taken back out of
    its run dir, so a failed start leaves nothing half written."""
    sinks, error = None, None
    if run.env.is_main:
        try:
            ds_config = getattr(run.engine, "ds_config", None)
            if ds_config is not None:
                write_json_atomic(run.run_dir.path / "deepspeed.json", ds_config)
            sinks = MetricSinks(run.run_dir, run.cfg.log, run.cfg.to_dict(), start)
        except Exception as exc:  # re-raised below, on every rank, once the dir is clean
            error = exc
    (opened,) = reduce_over_ranks([float(error is None)], dist.ReduceOp.MIN, run.device)
    if opened:
        return sinks
    if run.env.is_main and run.mode == "new":  # a resumed or restarted run keeps its dir
        run.run_dir.discard_new_run()
    barrier()
    raise error or TrainError("rank 0 could not open the metric sinks (see its error)")


def resume(run_dir: Path) -> Path:
    """Continue the run in `run_dir` from its latest checkpoint with its own config (from step 0
    when it stopped before its first checkpoint)."""
    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise TrainError(f"{run_dir} is not a run dir (no config.json); pass the --out of a run")
    return train(config_from_dict(read_config(run_dir)), Path(run_dir))


def restore(run: Run) -> int:
    """Load weights/optimizer/engine state, move the data stream to its position, then set
    the RNGs (an old checkpoint's replay may draw from them, so RNGs come last); returns the
    next step."""
    state_dir = latest_train_state(run.run_dir.path)
    position = read_position(state_dir)
    run.skipped_before = saved_total(position.skipped, str(state_dir / POSITION_FILE))
    if run.env.is_main:
        discard_unfinished(run.run_dir.checkpoints, position.step)
    barrier()
    check_layout(position, run.env.world_size, run.cfg.engine, run.cfg.dist.zero_stage,
                 state_dir)
    run.engine.load_state(state_dir, read_tensors(state_dir.parent))
    run.stream.load_state_dict(position.stream, read_reader(state_dir, run.env.rank))
    set_rng_state(read_rng(state_dir, run.env.rank))
    return position.step


def save(run: Run, step: int) -> Path:
    """Write the checkpoint of `step`; a write the filesystem refuses (disk full, quota) is one
    error naming the checkpoint still intact, with the partial files removed."""
    ckpt_dir = run.run_dir.checkpoint_dir(step)
    staging = ckpt_dir.parent / f".{ckpt_dir.name}.train_state"
    try:
        return _save(run, step, ckpt_dir, staging)
    except (OSError, RuntimeError) as exc:
        problem = write_failure(staging.parent, exc)
        if problem is None:
            raise
        if run.env.is_main:
            shutil.rmtree(staging, ignore_errors=True)
        latest = run.run_dir.latest_checkpoint()
        kept = f"the last checkpoint, {latest}, is intact" if latest else "no checkpoint yet"
        raise TrainError(f"checkpoint {ckpt_dir.name} could not be written in {ckpt_dir.parent} "
                         f"({problem}); {kept}: free space, then `levl-train resume "
                         f"{run.run_dir.path}`") from exc


def write_failure(folder: Path, exc: BaseException) -> str | None:
    """What went wrong when a checkpoint write failed for want of space or access, else None.
    torch.save reports a full disk as a RuntimeError about the zip writer's position, not as
    ENOSPC: the free space decides."""
    free = shutil.disk_usage(folder).free
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}; {free} bytes free"
    return f"no space left: {free} bytes free" if free < 1 << 20 else None


def _save(run: Run, step: int, ckpt_dir: Path, staging: Path) -> Path:
    """All ranks write their train state into one staging dir; rank 0 then writes the
    consolidated weights and moves the staging dir in before the checkpoint's atomic rename."""
    cfg, env = run.cfg, run.env
    if env.is_main:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
        staging.mkdir(parents=True)
    barrier()
    run.engine.save_state(staging, env.is_main)
    write_rng(staging, env.rank)
    write_reader(staging, env.rank, run.stream.rank_state())
    skipped = run_total(run.skipped_before, run.skipped)  # a collective: every rank
    if env.is_main:
        write_position(staging, Position(step, step * cfg.data.batch_size,
                                         run.stream.state_dict(), env.world_size, cfg.engine,
                                         cfg.dist.zero_stage, skipped))
    with run.engine.full_weights():
        barrier()
        if env.is_main:
            _write_checkpoint(run, step, ckpt_dir, staging)
    barrier()
    return ckpt_dir


def _write_checkpoint(run: Run, step: int, ckpt_dir: Path, staging: Path) -> None:
    cfg = run.cfg
    metadata = build_metadata(
        model_config=cfg.model, objective_config=cfg.objective,
        tokenizer_spec=run.tokenizer.spec(), preprocess=cfg.preprocess, step=step,
        samples_seen=step * cfg.data.batch_size, manifest_fingerprint=run.manifest.fingerprint,
        recipe=cfg.to_dict(), code_version=code_version(),
    )
    module = run.engine.module
    save_checkpoint(ckpt_dir, model=module.model, objective=module.objective,
                    metadata=metadata, train_state=staging)
    run.run_dir.mark_latest(ckpt_dir)
    run.run_dir.prune(cfg.keep_last)


def code_version() -> str:
    """levl-train's version plus the git commit of its source tree when there is one."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}"
