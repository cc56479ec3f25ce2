"""`levl-train`: run a named recipe. Bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import click
import typer
from tqdm import tqdm

from levl_data.errors import DataError
from levl_model.errors import ModelError
from levl_train.config import apply_overrides, with_objective_model
from levl_train.errors import PeerFailed, TrainError
from levl_train.recipes import RECIPES, get_recipe

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train levl encoders from named recipes.")
USER_ERRORS = (TrainError, DataError, ModelError)


@app.callback()
def _options(debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False) -> None:
    """Options shared by every command (read back in `main`)."""


def _resolved(recipe: str, data: Path | None, set_: list[str] | None, smoke: bool):
    """The recipe's config with --data and --set applied (shared by run and submit)."""
    cfg = get_recipe(recipe, smoke=smoke)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=str(data)))
    cfg = apply_overrides(cfg, set_ or [])
    return absolute_manifest(with_objective_model(cfg, set_keys(set_)))


def set_keys(set_: list[str] | None) -> set[str]:
    """The keys a command's --set items name (what the user chose over the recipe)."""
    return {item.partition("=")[0].strip() for item in set_ or []}


def absolute_manifest(cfg):
    """The manifest as an absolute path: the run dir's config.json must name its data whatever
    the working directory of a later `levl-train resume RUN_DIR` (or of a SLURM job) is."""
    if cfg.data.manifest is None:
        return cfg
    manifest = str(Path(cfg.data.manifest).expanduser().absolute())
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=manifest))


def _default_out(recipe: str) -> Path:
    return Path("runs") / f"{recipe}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


DataOpt = Annotated[Path | None, typer.Option(help="Training shard manifest.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: key=value.")]
SmokeOpt = Annotated[bool, typer.Option(help="The recipe's few-step smoke size.")]
RecipeArg = Annotated[str, typer.Argument(help="Recipe name (see `levl-train recipes`).")]


@app.command()
def run(
    recipe: RecipeArg,
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (new or empty).")] = None,
    set_: SetOpt = None,
    smoke: SmokeOpt = False,
) -> None:
    """Train RECIPE here: one process, or N ranks under torchrun with --set engine=deepspeed.

    An --out that already holds this run's checkpoints is continued, not restarted."""
    from levl_train.loop import train

    cfg = _resolved(recipe, data, set_, smoke)
    out = out or _default_out(recipe)
    last = train(cfg, out)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"run {out}: {cfg.steps} steps, last checkpoint {last}")


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="A run directory with a checkpoint.")]
           ) -> None:
    """Continue a run from its latest checkpoint, bitwise as if it had never stopped."""
    from levl_train.loop import resume as resume_run

    last = resume_run(run_dir)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"run {run_dir}: resumed, last checkpoint {last}")


@app.command()
def submit(
    recipe: RecipeArg,
    nodes: Annotated[int, typer.Option(help="SLURM nodes.")] = 1,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs (= tasks) per node; "
                                                      "default: the profile's.")] = None,
    partition: Annotated[str | None, typer.Option(help="Override the profile's.")] = None,
    time: Annotated[int | None, typer.Option(help="Time limit in minutes.")] = None,
    profile: Annotated[str, typer.Option(help="cluster/profiles/NAME.toml or a path.")] = "local",
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory.")] = None,
    set_: SetOpt = None,
    smoke: SmokeOpt = False,
    wait: Annotated[bool, typer.Option(help="Block until the job ends.")] = False,
    step_time: Annotated[float | None, typer.Option(
        help="Seconds per step on this placement, to check that the time limit reaches a "
             "checkpoint; default: measured in --out's metrics.jsonl, when it continues a "
             "run.")] = None,
) -> None:
    """Queue RECIPE on SLURM through submitit: one task per GPU, requeued on preemption.

    Refused before anything is queued or written: GPUs on a profile without GPUs, a missing or
    invalid manifest, a time limit that cannot reach the first checkpoint."""
    from levl_train.preflight import known_step_time
    from levl_train.profiles import load_profile
    from levl_train.submit import Placement, resolve_engine, wait_for_result
    from levl_train.submit import submit as submit_job

    cfg = _resolved(recipe, data, set_, smoke)
    site = load_profile(profile)
    site = dataclasses.replace(site, **{k: v for k, v in (("partition", partition),
                                                         ("time_min", time)) if v is not None})
    placement = Placement(nodes, site.gpus_per_node if gpus_per_node is None else gpus_per_node)
    cfg, engine_note = resolve_engine(cfg, placement, explicit="engine" in set_keys(set_))
    out = out or _default_out(recipe)
    job, notes = submit_job(cfg, out, site, placement, known_step_time(step_time, out))
    for note in filter(None, [engine_note, *notes]):
        typer.echo(note)
    typer.echo(f"submitted job {job.job_id}: {recipe} on {placement.nodes} node(s) × "
               f"{placement.tasks_per_node} task(s), run dir {out}")
    if wait:
        typer.echo(f"finished: last checkpoint {wait_for_result(job)}")


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Job state, step, samples seen, last losses and throughput of a run."""
    from levl_train.status import format_status, run_status

    typer.echo(format_status(run_status(run_dir)))


@app.command()
def recipes(
    show: Annotated[str | None, typer.Option(help="Print one recipe's resolved config.")] = None,
) -> None:
    """List the recipes, or print one recipe's config as JSON."""
    if show:
        typer.echo(json.dumps(get_recipe(show).to_dict(), indent=2))
        return
    for name, fn in sorted(RECIPES.items()):
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:22s} {summary}")


def _launch_rank() -> str:
    """torchrun's RANK, else srun's SLURM_PROCID (before the process group exports RANK)."""
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))


def main() -> None:
    try:
        app(standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except USER_ERRORS as err:
        if "--debug" in sys.argv[1:]:
            raise
        # Rank 0 speaks for the job: an error every rank meets alike is printed once, and a
        # rank's own failure reaches rank 0 as PeerFailed, which it has printed already.
        if _launch_rank() == "0" and not isinstance(err, PeerFailed):
            # tqdm.write: on a line of its own even when a run's progress bar is still open
            tqdm.write(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
