"""levl-eval: evaluate frozen checkpoints (and their random-init baselines) and write a report.

    levl-eval all --ckpt RUN_OR_CKPT [--ckpt ...] --out DIR [--data SYNTH_DIR] [--datasets ROOT] [--vlm]
    levl-eval PROTOCOL ...same options...      (one protocol: zeroshot, linear, segmentation, ...)
    every command: [--cache DIR | --no-cache]  (features cached by default under
                   ~/.cache/levl/features, see levl_eval.features.cache)

A protocol's own options come from its folder (levl_eval.protocols.<name>.entry: `cli_options`)
and appear on `all` and on its own command, e.g. linear's [--probe linear|mlp|attentive|all]
[--train-per-class-cap N], zeroshot's [--class-names curated|dataset], vlm's [--llm NAME]
[--vlm-epochs N] [--save-bridges DIR | --bridges DIR]. An opt-in protocol (vlm) has a flag on
`all` that adds it (--vlm).

`all` runs a named suite (levl_eval.suites): `--suite synthetic|quick|paper` (default
synthetic) plus `--set key=value` overrides; the options above are shorthands for suite fields,
and the whole resolved suite lands in report.json. The default suite leaves out the frozen-VLM
protocol (minutes per encoder on a CPU) unless --vlm (or --protocol vlm) asks for it.
    levl-eval all ... [--suite NAME] [--set key=value ...]
    levl-eval suites [--show NAME]                 (list the suites / print one resolved)
    levl-eval report DIR                           (re-render report.md from report.json)
    levl-eval report DIR_A DIR_B ... [--out DIR]   (saved reports side by side, merged into --out)

Every protocol runs on the synthetic world given by --data, and on each real dataset found
under --datasets ROOT (alias --data-root) in its standard layout (levl_eval.datasets); absent
ones are reported and skipped. Either option may be left out (without --data only real datasets
run), not both.

User errors print `error: <one line>` on stderr and exit 2 (--debug shows the traceback).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from levl_data.errors import DataError
from levl_eval import __version__
from levl_eval.compare import merge_reports
from levl_eval.errors import EvalError
from levl_eval.features.spill import fix_mmap_threshold
from levl_eval.protocols.registry import ENTRIES, OPT_IN
from levl_eval.report import (
    check_output_dir,
    format_headline,
    publish_report,
    read_report,
    rerender_markdown,
)
from levl_eval.runner import run_evaluation
from levl_eval.suites import DEFAULT_SUITE, SUITES, eval_options, resolve_suite
from levl_model.errors import ModelError

T = TypeVar("T")
USER_ERRORS = (EvalError, ModelError, DataError, OSError)

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Evaluate frozen levl checkpoints beside a random-init baseline; write report.json/md.",
)

CkptOpt = Annotated[list[Path], typer.Option("--ckpt", help="Checkpoint dir or run dir (its `latest`); repeatable.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Synthetic-world dir holding eval-train/ and eval-test/ (optional with --datasets: then only real datasets run).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output dir for report.json and report.md.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or auto (cuda if present).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=0, help="Data-loader worker processes.")]
SeedOpt = Annotated[int | None, typer.Option("--random-seed", help="Seed of the random-init baseline.")]
DatasetsOpt = Annotated[Path | None, typer.Option("--datasets", "--data-root", help="Root holding real datasets in their standard layouts (imagenet/, places365_standard/, fgvc-aircraft-2013b/, oxford-iiit-pet/, imagefolder/, ADEChallengeData2016/, coco_stuff164k/, nyu/, bg_challenge/, coco/, flickr30k/, gqa/, vqav2/, pope/; see the README).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Feature cache dir, reused across runs (default $LEVL_FEATURE_CACHE, else ~/.cache/levl/features).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Extract every feature afresh; read and write no cache.")]
SuiteOpt = Annotated[str, typer.Option("--suite", help=f"Named evaluation suite ({', '.join(SUITES)}; see `levl-eval suites`).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override one suite field, key=value (e.g. linear.train_per_class_cap=16); repeatable.")]
ProtocolOpt = Annotated[list[str] | None, typer.Option("--protocol", help="Protocol to run (repeatable; shorthand for --set protocols=...; default: the suite's).")]


def parameter(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """One option of a command built by `command_of` (no default: a required option)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def common_parameters() -> list[inspect.Parameter]:
    """The options of every evaluating command."""
    return [parameter("ckpt", CkptOpt), parameter("out", OutOpt), parameter("data", DataOpt, None),
            parameter("device", DeviceOpt, None), parameter("batch_size", BatchOpt, None),
            parameter("workers", WorkersOpt, None), parameter("random_seed", SeedOpt, None),
            parameter("datasets", DatasetsOpt, None), parameter("cache", CacheOpt, None),
            parameter("no_cache", NoCacheOpt, False)]


def protocol_parameters(name: str) -> list[inspect.Parameter]:
    """The protocol's own options, as its entry declares them (help prefixed with its name)."""
    parameters = []
    for option in ENTRIES[name].cli_options:
        value_type = list[option.type] if option.repeatable else option.type
        typer_option = typer.Option(option.flag, help=f"{name}: {option.help}", min=option.min)
        parameters.append(parameter(option.param, Annotated[value_type | None, typer_option], None))
    return parameters


def opt_in_parameters() -> list[inspect.Parameter]:
    """`--NAME` on `all` for every protocol a suite leaves out unless asked (--vlm)."""
    return [parameter(name, Annotated[bool, typer.Option(f"--{name}", help=f"Also run the {name} protocol (opt-in: slow on a CPU).")], False)
            for name in ENTRIES if name in OPT_IN]


def suite_fields(values: Mapping[str, Any], protocols: Iterable[str]) -> dict:
    """The suite fields (levl_eval.suites) the common options and the given protocols' own
    options set; None: not given."""
    fields = {"device": values["device"], "batch_size": values["batch_size"],
              "workers": values["workers"], "random_seed": values["random_seed"],
              "cache": False if values["no_cache"] else None,
              "cache_dir": None if values["cache"] is None else str(values["cache"])}
    for name in protocols:
        for option in ENTRIES[name].cli_options:
            fields[f"{name}.{option.field}"] = option.suite_value(values[option.param])
    return fields


def command_of(run: Callable[[dict], None], parameters: list[inspect.Parameter], doc: str) -> Callable[..., None]:
    """A typer command whose options are `parameters` (built at import from the protocols'
    entries, so a protocol's options need no code here); `run` gets every value by name."""

    def command(**values: Any) -> None:
        run(values)

    command.__signature__ = inspect.Signature(parameters)  # a repeated option name fails here
    command.__annotations__ = {p.name: p.annotation for p in parameters}  # objects, not strings
    command.__doc__ = doc
    return command


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


def skipped_summary(skipped: list[dict]) -> str:
    """One line for every task that did not run, grouped by reason (report.md lists each)."""
    groups: dict[str, list[str]] = {}
    for item in skipped:
        groups.setdefault(item["reason"], []).append(item["task"])
    parts = [f"{', '.join(tasks)}: {reason}" for reason, tasks in groups.items()]
    return f"skipped {len(skipped)} task(s) — " + "; ".join(parts)


def evaluate_and_publish(
    ckpt: list[Path], data: Path | None, out: Path, datasets: Path | None, given: dict,
    suite: str = DEFAULT_SUITE, overrides: list[str] | None = None, add: tuple[str, ...] = (),
) -> None:
    """Resolve the suite (the one place options, suite and --set meet), check cheap things
    first (names, device, --out), evaluate, then publish atomically with the suite recorded."""
    resolved = resolve_suite(suite, given, overrides, add=add)
    options = eval_options(resolved, datasets)
    check_output_dir(out.absolute())
    report = run_evaluation(ckpt, data, options,
                            on_skipped=lambda skipped: typer.echo(skipped_summary(skipped)),
                            suite=resolved.to_dict())
    out_dir = publish_report(out, report)
    typer.echo(format_headline(report))
    if "feature_cache" in report:
        cache = report["feature_cache"]
        typer.echo(f"feature cache {cache['dir']}: {cache['hits']} hit(s), {cache['misses']} miss(es)")
    typer.echo(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}")


def run_all(values: dict) -> None:
    """`levl-eval all`: a suite, with every protocol's options and the opt-in flags."""
    given = {**suite_fields(values, ENTRIES), "protocols": tuple(values["protocol"] or ()) or None}
    added = tuple(name for name in OPT_IN if values[name])
    guarded(values["debug"], lambda: evaluate_and_publish(
        values["ckpt"], values["data"], values["out"], values["datasets"], given, values["suite"],
        values["set_"], add=added))


app.command("all")(command_of(run_all, [
    *common_parameters(), parameter("suite", SuiteOpt, DEFAULT_SUITE), parameter("set_", SetOpt, None),
    parameter("protocol", ProtocolOpt, None), *opt_in_parameters(),
    *(p for name in ENTRIES for p in protocol_parameters(name)), parameter("debug", DebugOpt, False),
], "Run a suite's protocols (default: every one but the opt-in ones) on each checkpoint and a random baseline."))


@app.command("suites")
def suites_command(
    show: Annotated[str | None, typer.Option("--show", help="Print one suite's resolved config as JSON.")] = None,
    debug: DebugOpt = False,
) -> None:
    """List the evaluation suites, or print one suite's resolved config as JSON."""
    if show:
        resolved = guarded(debug, lambda: resolve_suite(show))
        typer.echo(json.dumps(resolved.to_dict(), indent=2))
        return
    for name, fn in SUITES.items():
        summary = " ".join((fn.__doc__ or "").split())
        typer.echo(f"{name:10s} {summary}")


def single_protocol_command(name: str) -> Callable[..., None]:
    """`levl-eval <name>`: the `all` command restricted to one protocol, with its own options."""

    def run(values: dict) -> None:
        given = {**suite_fields(values, (name,)), "protocols": (name,)}
        guarded(values["debug"], lambda: evaluate_and_publish(
            values["ckpt"], values["data"], values["out"], values["datasets"], given))

    parameters = [*common_parameters(), *protocol_parameters(name), parameter("debug", DebugOpt, False)]
    summary = " ".join((ENTRIES[name].protocol.__doc__ or "").split("\n\n")[0].split())
    return command_of(run, parameters, f"Run only the {name} protocol, plus the random baseline. {summary}")


for protocol_name in ENTRIES:
    app.command(protocol_name)(single_protocol_command(protocol_name))


def compare_saved_reports(dirs: list[Path], out: Path | None) -> None:
    """Several saved reports side by side (written to --out when given); one DIR without --out
    is re-rendered in place."""
    if len(dirs) == 1 and out is None:
        path = rerender_markdown(dirs[0])
        typer.echo(format_headline(read_report(dirs[0])))
        typer.echo(f"wrote {path}")
        return
    if out is not None:
        check_output_dir(out.absolute())
    merged = merge_reports(dirs, [read_report(d) for d in dirs],
                           {"package": "levl-eval", "version": __version__, "command": sys.argv})
    typer.echo(format_headline(merged))
    for warning in merged["warnings"]:
        typer.echo(f"warning: {warning}")
    if out is None:
        typer.echo("pass --out DIR to write them as one report.md (with plots)")
        return
    out_dir = publish_report(out, merged)
    typer.echo(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}")


@app.command("report")
def report_command(
    dirs: Annotated[list[Path], typer.Argument(help="Directories written by `levl-eval all`; several are shown side by side.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the merged report.json/md and plots here (default: re-render a single DIR in place).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Re-render report.md from report.json, or put several saved reports side by side."""
    guarded(debug, lambda: compare_saved_reports(dirs, out))


def main() -> None:
    fix_mmap_threshold()  # a head's batches of mapped tokens must not grow the heap (features.spill)
    app(prog_name="levl-eval")


if __name__ == "__main__":
    sys.exit(main())
