"""levl-eval: evaluate frozen checkpoints (and their random-init baselines) and write a report.

    levl-eval all --ckpt RUN_OR_CKPT [--ckpt ...] --data SYNTH_DIR --out DIR [--datasets ROOT]
    levl-eval zeroshot|linear|segmentation|background|retrieval ...same options...
    levl-eval report DIR                           (re-render report.md from report.json)

Every protocol runs on the synthetic world; with --datasets, also on each real dataset found
under ROOT in its standard layout (levl_eval.datasets). Absent ones are reported and skipped.

User errors print `error: <one line>` on stderr and exit 2 (--debug shows the traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from levl_data.errors import DataError
from levl_eval.errors import EvalError
from levl_eval.protocols import PROTOCOLS
from levl_eval.report import (
    check_output_dir,
    format_headline,
    publish_report,
    read_report,
    rerender_markdown,
)
from levl_eval.runner import EvalOptions, check_protocol_names, resolve_device, run_evaluation
from levl_model.errors import ModelError

T = TypeVar("T")
USER_ERRORS = (EvalError, ModelError, DataError, OSError)

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Evaluate frozen levl checkpoints beside a random-init baseline; write report.json/md.",
)

CkptOpt = Annotated[list[Path], typer.Option("--ckpt", help="Checkpoint dir or run dir (its `latest`); repeatable.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Synthetic-world dir holding eval-train/ and eval-test/.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output dir for report.json and report.md.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (cuda if present).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="Data-loader worker processes.")]
SeedOpt = Annotated[int, typer.Option("--random-seed", help="Seed of the random-init baseline.")]
DatasetsOpt = Annotated[Path | None, typer.Option("--datasets", help="Root holding real datasets in their standard layouts (ADEChallengeData2016/, bg_challenge/, coco/, flickr30k/).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


def guarded(debug: bool, action: Callable[[], T]) -> T:
    """Run `action`; a user error becomes `error: <message>` and exit 2 unless --debug."""
    try:
        return action()
    except USER_ERRORS as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def evaluate_and_publish(
    protocols: tuple[str, ...], ckpt: list[Path], data: Path, out: Path, device: str,
    batch_size: int, workers: int, random_seed: int, datasets: Path | None = None,
) -> None:
    """Check cheap things first (names, device, --out), evaluate, then publish atomically."""
    options = EvalOptions(
        protocols=check_protocol_names(protocols), device=resolve_device(device),
        batch_size=batch_size, num_workers=workers, random_seed=random_seed,
        datasets=None if datasets is None else str(datasets),
    )
    check_output_dir(out.absolute())
    report = run_evaluation(ckpt, data, options)
    out_dir = publish_report(out, report)
    for item in report["skipped"]:
        typer.echo(f"skipped {item['task']}: {item['reason']}")
    typer.echo(format_headline(report))
    typer.echo(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}")


@app.command("all")
def all_command(
    ckpt: CkptOpt, data: DataOpt, out: OutOpt,
    protocol: Annotated[list[str] | None, typer.Option("--protocol", help=f"Protocol to run (repeatable; default all: {', '.join(PROTOCOLS)}).")] = None,
    device: DeviceOpt = "auto", batch_size: BatchOpt = 256, workers: WorkersOpt = 0,
    random_seed: SeedOpt = 0, datasets: DatasetsOpt = None, debug: DebugOpt = False,
) -> None:
    """Run every protocol (or those named by --protocol) on each checkpoint and a random baseline."""
    names = tuple(protocol) if protocol else tuple(PROTOCOLS)
    guarded(debug, lambda: evaluate_and_publish(
        names, ckpt, data, out, device, batch_size, workers, random_seed, datasets))


def single_protocol_command(name: str) -> Callable[..., None]:
    """`levl-eval <name>`: the `all` command restricted to one protocol."""

    def command(
        ckpt: CkptOpt, data: DataOpt, out: OutOpt, device: DeviceOpt = "auto",
        batch_size: BatchOpt = 256, workers: WorkersOpt = 0, random_seed: SeedOpt = 0,
        datasets: DatasetsOpt = None, debug: DebugOpt = False,
    ) -> None:
        guarded(debug, lambda: evaluate_and_publish(
            (name,), ckpt, data, out, device, batch_size, workers, random_seed, datasets))

    command.__doc__ = f"Run only the {name} protocol (plus the random baseline)."
    return command


for _name in PROTOCOLS:
    app.command(_name)(single_protocol_command(_name))


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Argument(help="A directory written by `levl-eval all`.")],
    debug: DebugOpt = False,
) -> None:
    """Re-render report.md from report.json (no re-evaluation) and print the headline table."""
    path = guarded(debug, lambda: rerender_markdown(out))
    typer.echo(format_headline(read_report(out)))
    typer.echo(f"wrote {path}")


def main() -> None:
    app(prog_name="levl-eval")


if __name__ == "__main__":
    sys.exit(main())
