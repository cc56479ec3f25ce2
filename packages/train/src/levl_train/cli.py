"""`levl-train`: run a named recipe. Bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import click
import typer

from levl_data.errors import DataError
from levl_model.errors import ModelError
from levl_train.config import apply_overrides
from levl_train.errors import TrainError
from levl_train.recipes import RECIPES, get_recipe

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train levl encoders from named recipes.")
USER_ERRORS = (TrainError, DataError, ModelError)


@app.callback()
def _options(debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False) -> None:
    """Options shared by every command (read back in `main`)."""


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `levl-train recipes`).")],
    data: Annotated[Path | None, typer.Option(help="Training shard manifest.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (new or empty).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key=value.")] = None,
    smoke: Annotated[bool, typer.Option(help="The recipe's few-step smoke size.")] = False,
) -> None:
    """Train RECIPE locally (one process: the CPU or one GPU)."""
    from levl_train.loop import train

    cfg = get_recipe(recipe, smoke=smoke)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=str(data)))
    cfg = apply_overrides(cfg, set_ or [])
    out = out or Path("runs") / f"{recipe}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    last = train(cfg, out)
    typer.echo(f"run {out}: {cfg.steps} steps, last checkpoint {last}")


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


def main() -> None:
    try:
        app(standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except USER_ERRORS as err:
        if "--debug" in sys.argv[1:]:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
