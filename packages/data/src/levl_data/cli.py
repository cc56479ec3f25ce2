"""`levl-data`: inspect, verify and synthesize shard sets.

User errors (DataError, and ValueError from bad options) print `error: <one line>` to stderr and
exit 2; `--debug` re-raises them with the traceback instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from levl_data.cli_errors import user_errors
from levl_data.cli_fetch import fetch_app, pack
from levl_data.errors import DataError
from levl_data.manifest import read_manifest, verify_manifest
from levl_data.summary import decode_problems, decoded_count, histograms, summarize

app = typer.Typer(
    name="levl-data",
    help="levl datasets: fetch, pack, synthesize, verify and inspect levl.shards/v1 shard sets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(fetch_app, name="fetch")
app.command()(pack)

ManifestArg = Annotated[Path, typer.Argument(help="manifest.json, or the directory holding it")]


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of user errors")] = False,
) -> None:
    """levl datasets: fetch, pack, synthesize, verify and inspect levl.shards/v1 shard sets."""


@app.command()
def verify(
    ctx: typer.Context,
    manifest: ManifestArg,
    decode: Annotated[int, typer.Option(help="decode N evenly spaced images per shard")] = 16,
) -> None:
    """Re-hash every shard, count its samples, decode N images per shard; one line per problem."""
    with user_errors(ctx):
        if decode < 0:
            raise ValueError(f"--decode must be >= 0, got {decode}")
        loaded = read_manifest(manifest, check_files=False)
        problems = verify_manifest(loaded) + decode_problems(loaded, decode)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    total = sum(shard.bytes for shard in loaded.shards)
    typer.echo(
        f"OK {loaded.path}: {loaded.num_samples} samples in {len(loaded.shards)} shards, "
        f"{total} bytes, fingerprint {loaded.fingerprint[:16]}, "
        f"{decoded_count(loaded, decode)} images decoded"
    )


@app.command()
def info(
    ctx: typer.Context,
    manifest: ManifestArg,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    scan: Annotated[
        int, typer.Option(help="samples read for the caption/image-size histograms (0: none)")
    ] = 1000,
) -> None:
    """Name, split, samples, shards, bytes, fingerprint, stats, success rate, histograms."""
    with user_errors(ctx):
        if scan < 0:
            raise ValueError(f"--scan must be >= 0, got {scan}")
        loaded = read_manifest(manifest, check_files=scan > 0)
        summary = summarize(loaded)
        if scan > 0:
            summary["histograms"] = histograms(loaded, scan)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key + ':':<13} {_plain(value)}")


@app.command()
def convert(
    ctx: typer.Context,
    manifest: ManifestArg,
    to: Annotated[str, typer.Option("--to", help="target format: ffcv")],
    out: Annotated[Path, typer.Option(help="output directory (new or empty)")],
    workers: Annotated[
        int, typer.Option(help="ffcv writer processes (1: the same bytes every time)")
    ] = 1,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality of the re-encoded images")] = 95,
) -> None:
    """Convert a webdataset shard set into an ffcv .beton with its own manifest."""
    with user_errors(ctx):
        from levl_data.convert import convert as convert_shards

        path = convert_shards(manifest, out, to=to, workers=workers, jpeg_quality=jpeg_quality)
        loaded = read_manifest(path)
    stats = loaded.data["stats"]
    skipped = stats["attempted"] - stats["written"]
    typer.echo(f"{loaded.path}\t{loaded.num_samples} samples ({skipped} undecodable skipped)")


@app.command()
def synth(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option(help="output directory (gets train/ eval-train/ eval-test/)")
    ],
    size: Annotated[str, typer.Option(help="micro | tiny | small | medium")] = "tiny",
    seed: Annotated[int, typer.Option(help="world seed (same seed, same bytes)")] = 0,
) -> None:
    """Write the synthetic world: three shard sets with manifests."""
    with user_errors(ctx):
        try:
            from levl_data.synth import write_world
        except ImportError as err:
            raise DataError(
                f"levl_data.synth cannot be imported ({err}); reinstall levl-data"
            ) from err
        manifests = write_world(out, size, seed)
        for split, path in manifests.items():
            loaded = read_manifest(path, check_files=False)
            typer.echo(f"{split}\t{loaded.path}\t{loaded.num_samples} samples")


@app.command()
def photos(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="output directory, new or empty (gets train/ val/ "
                                           "classes.json)")],
    train: Annotated[int, typer.Option("--train", help="train samples")] = 5000,
    val: Annotated[int, typer.Option("--val", help="validation samples")] = 600,
    size: Annotated[int, typer.Option(help="image side in pixels")] = 112,
    seed: Annotated[int, typer.Option(help="seed (same seed, same bytes)")] = 0,
) -> None:
    """Write a small real-photo caption set from scikit-image's bundled photos."""
    with user_errors(ctx):
        from levl_data.photoset import make_photo_set

        manifests = make_photo_set(out, n_train=train, n_val=val, image_size=size, seed=seed)
        for split, path in manifests.items():
            loaded = read_manifest(path, check_files=False)
            typer.echo(f"{split}\t{loaded.path}\t{loaded.num_samples} samples")
        typer.echo(f"classes\t{Path(out).absolute() / 'classes.json'}")


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(item)}" for key, item in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return "-" if value is None else str(value)


def main() -> None:
    """Console-script entry point (`levl-data`)."""
    app()


if __name__ == "__main__":  # `python -m levl_data.cli`, where no console script is installed
    main()
