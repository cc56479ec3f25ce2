"""`levl-data fetch cc12m|datacomp-l` and `levl-data pack`: make shard sets from web or disk.

Options mirror img2dataset's knobs that matter at scale (parallelism, retries, shard size) and
the stored-image policy; everything else is fixed by levl_data.fetch so every fetch is alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from levl_data.cli_errors import user_errors
from levl_data.fetch.options import DISTRIBUTORS, RESIZE_MODES, FetchOptions

DEFAULTS = FetchOptions()  # one source for the CLI's defaults and the Python API's

fetch_app = typer.Typer(
    help="Download a web image-caption corpus with img2dataset into shards + manifest; "
    "rerun the same command to resume.",
    no_args_is_help=True,
)

Out = Annotated[
    Path, typer.Option(help="output directory (new or empty, or the same fetch to resume)")
]
ImageSize = Annotated[int, typer.Option(help="stored size in pixels (shorter side for keep_ratio)")]
ResizeMode = Annotated[
    str, typer.Option(help=" | ".join(RESIZE_MODES))
]
MaxPixels = Annotated[
    int, typer.Option(help="refuse images above this many pixels before decoding")
]
Processes = Annotated[int, typer.Option(help="img2dataset processes")]
Threads = Annotated[int, typer.Option(help="download threads per process")]
Retries = Annotated[int, typer.Option(help="retries per URL")]
Timeout = Annotated[float, typer.Option(help="seconds per URL request")]
PerShard = Annotated[int, typer.Option(help="metadata rows per shard")]
Distributor = Annotated[
    str,
    typer.Option(help=" | ".join(DISTRIBUTORS) + r" (extras levl-data\[spark], levl-data\[ray])"),
]
MaxSamples = Annotated[int | None, typer.Option(help="attempt only the first N selected rows")]
Name = Annotated[str | None, typer.Option(help="dataset name in the manifest (default: kind)")]


@fetch_app.command("cc12m")
def fetch_cc12m(
    ctx: typer.Context,
    out: Out,
    metadata: Annotated[
        str | None,
        typer.Option(help="CC12M TSV (url<TAB>caption): path or URL [default: Google's]"),
    ] = None,
    image_size: ImageSize = DEFAULTS.image_size,
    resize_mode: ResizeMode = DEFAULTS.resize_mode,
    max_pixels: MaxPixels = DEFAULTS.max_pixels,
    processes: Processes = DEFAULTS.processes,
    threads: Threads = DEFAULTS.threads,
    retries: Retries = DEFAULTS.retries,
    timeout: Timeout = DEFAULTS.timeout,
    samples_per_shard: PerShard = DEFAULTS.samples_per_shard,
    distributor: Distributor = DEFAULTS.distributor,
    max_samples: MaxSamples = None,
    name: Name = None,
) -> None:
    """Fetch Conceptual 12M."""
    options = dict(locals())
    _run_fetch(ctx, "cc12m", [metadata] if metadata else [], None, False, options)


@fetch_app.command("datacomp-l")
def fetch_datacomp_l(
    ctx: typer.Context,
    out: Out,
    metadata: Annotated[
        list[Path] | None,
        typer.Option(
            help="DataComp metadata parquet file or directory (repeatable) "
            "[default: download mlfoundations/datacomp_large from the HF Hub]"
        ),
    ] = None,
    subset_uids: Annotated[
        Path | None, typer.Option(help="DataComp subset .npy (sorted u8,u8 uids) to keep")
    ] = None,
    blur_faces: Annotated[
        bool, typer.Option(help="blur the metadata's face boxes")
    ] = DEFAULTS.blur_faces,
    image_size: ImageSize = DEFAULTS.image_size,
    resize_mode: ResizeMode = DEFAULTS.resize_mode,
    max_pixels: MaxPixels = DEFAULTS.max_pixels,
    processes: Processes = DEFAULTS.processes,
    threads: Threads = DEFAULTS.threads,
    retries: Retries = DEFAULTS.retries,
    timeout: Timeout = DEFAULTS.timeout,
    samples_per_shard: PerShard = DEFAULTS.samples_per_shard,
    distributor: Distributor = DEFAULTS.distributor,
    max_samples: MaxSamples = None,
    name: Name = None,
) -> None:
    """Fetch DataComp-L (the `large` pool), optionally a uid subset of it."""
    options = dict(locals())
    sources = [str(path) for path in metadata or []]
    _run_fetch(ctx, "datacomp-l", sources, subset_uids, blur_faces, options)


def _run_fetch(
    ctx: typer.Context,
    kind: str,
    metadata: list[str],
    subset: Path | None,
    blur: bool,
    cli: dict,
) -> None:
    with user_errors(ctx):
        from levl_data.fetch import FetchRequest, fetch

        option_names = FetchOptions.__dataclass_fields__.keys() - {"blur_faces"}
        options = FetchOptions(blur_faces=blur, **{key: cli[key] for key in option_names})
        request = FetchRequest(
            kind=kind,
            out_dir=cli["out"],
            metadata=metadata,
            subset_file=subset,
            max_samples=cli["max_samples"],
            options=options,
            name=cli["name"],
        )
        result = fetch(request)
    _report(result)


def _report(result) -> None:
    from levl_data.manifest import read_manifest

    manifest = read_manifest(result.manifest)
    stats = manifest.data["stats"]
    if result.already_complete:
        typer.echo(f"already complete: {manifest.path} ({manifest.num_samples} samples)")
        return
    failures = ", ".join(f"{k}={v}" for k, v in stats["failures"].items()) or "none"
    resumed = f", resumed with {result.resumed_shards} shards kept" if result.resumed_shards else ""
    typer.echo(
        f"fetched {stats['written']}/{stats['attempted']} samples into "
        f"{len(manifest.shards)} shards{resumed}: {manifest.path} (failures: {failures})"
    )


def pack(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Option(
            "--from",
            help="CSV/TSV/parquet of (image path or URL, caption), or a "
            "folder of image + .txt caption pairs",
        ),
    ],
    out: Annotated[Path, typer.Option(help="output directory (new or empty)")],
    samples_per_shard: PerShard = 1000,
    image_size: Annotated[
        int | None, typer.Option(help="resize shorter side to this (default: store as is)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="dataset name (default: the source's name)")
    ] = None,
    split: Annotated[str, typer.Option(help="split name in the manifest")] = "train",
) -> None:
    """Pack local images + captions (or a URL table, via img2dataset) into shards + manifest."""
    with user_errors(ctx):
        from levl_data.pack import pack_shards

        manifest_path = pack_shards(
            source,
            out,
            samples_per_shard=samples_per_shard,
            image_size=image_size,
            name=name,
            split=split,
        )
        from levl_data.manifest import read_manifest

        manifest = read_manifest(manifest_path)
    stats = manifest.data["stats"]
    failures = ", ".join(f"{k}={v}" for k, v in stats["failures"].items()) or "none"
    typer.echo(
        f"packed {stats['written']}/{stats['attempted']} samples into {len(manifest.shards)} "
        f"shards: {manifest.path} (failures: {failures})"
    )
