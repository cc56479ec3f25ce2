"""Call img2dataset's Python API with levl's fixed choices and the user's pass-through options.

Fixed here: webdataset output, `uid` kept in each sample's JSON, face boxes blurred when given,
EXIF not stored (it can hold GPS positions), wandb off, and a pixel ceiling enforced by OpenCV
*before* it allocates the decoded image (img2dataset's own `max_image_area` check runs only
after a full decode, too late against a decompression bomb). img2dataset's chatter goes to a log
file in the work dir so the CLI's own output stays readable.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from levl_data.errors import DataError
from levl_data.fetch.distributors import distributor_running, worker_env
from levl_data.fetch.options import FetchOptions


def shard_digits(total_shards: int) -> int:
    """img2dataset's `oom_shard_count`: at least 5 digits, stable for a given input."""
    return max(5, math.ceil(math.log10(max(total_shards, 1) + 1)))


def run_img2dataset(
    input_dir: Path, out_dir: Path, options: FetchOptions, total_shards: int, log_file: Path
) -> None:
    """Fetch every not-yet-done shard of `input_dir/*.parquet` into `out_dir` (incremental)."""
    columns = _input_columns(input_dir)
    env = _worker_env(options)
    with (
        _environment(env),
        _output_to(log_file),
        _sigint_restored(),
        distributor_running(options.distributor, options.processes, env),
    ):
        from img2dataset import download  # heavy (cv2, albumentations): imported only here

        download(
            url_list=str(input_dir),
            input_format="parquet",
            url_col="url",
            caption_col="caption",
            bbox_col="face_bboxes" if options.blur_faces and "face_bboxes" in columns else None,
            save_additional_columns=["uid"] if "uid" in columns else None,
            output_folder=str(out_dir),
            output_format="webdataset",
            image_size=options.image_size,
            resize_mode=options.resize_mode,
            max_image_area=options.max_pixels,
            encode_format="jpg",
            encode_quality=95,
            extract_exif=False,
            processes_count=options.processes,
            thread_count=options.threads,
            retries=options.retries,
            timeout=options.timeout,
            number_sample_per_shard=options.samples_per_shard,
            oom_shard_count=shard_digits(total_shards),
            distributor=options.distributor,
            incremental_mode="incremental",
            enable_wandb=False,
        )


def _input_columns(input_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(min(input_dir.glob("*.parquet"))).names


@contextmanager
def _sigint_restored() -> Iterator[None]:
    """img2dataset installs a SIGINT handler that exits 0; restore ours, report the stop."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as stop:
        raise DataError(
            f"fetch interrupted (img2dataset exited with {stop.code}); rerun the same command "
            "to resume"
        ) from None
    finally:
        signal.signal(signal.SIGINT, handler)


def _worker_env(options: FetchOptions) -> dict[str, str]:
    """Env for img2dataset and its workers (processes, Spark or Ray workers)."""
    return {
        "WANDB_MODE": "disabled",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(options.max_pixels),
        **worker_env(options.distributor),
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set `values` in os.environ (inherited by spawned workers); restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _output_to(log_file: Path) -> Iterator[None]:
    """Point fds 1 and 2 (inherited by spawned workers) at `log_file` for the duration.

    sys.stdout/sys.stderr become streams on those fds rather than on the log file itself: a
    logging handler made meanwhile (Ray makes one when img2dataset imports it) keeps the stream,
    and one on the log file would be writing to a closed file after this fetch.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    # left open on purpose (a handler may hold one); closefd=False: the fds stay ours to restore
    out, err = (
        open(fd, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        for fd in (1, 2)
    )
    try:
        with redirect_stdout(out), redirect_stderr(err):
            yield
    finally:
        out.flush()
        err.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
