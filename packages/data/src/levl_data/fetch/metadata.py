"""Find, download and read the metadata (url + caption [+ uid, face boxes]) a fetch starts from.

Every reader returns the same normalized Arrow columns (`url`, `caption`, and for DataComp
`uid`, `face_bboxes`), so subset selection and img2dataset see one layout whatever the source.
A file with the wrong columns is refused before anything is downloaded.
"""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from levl_data.errors import DataError
from levl_data.shardscan import sha256_file

CC12M_URL = "https://storage.googleapis.com/conceptual_12m/cc12m.tsv"
DATACOMP_LARGE_REPO = "mlfoundations/datacomp_large"
DATACOMP_COLUMNS = ("uid", "url", "text", "face_bboxes")
IMAGE_COLUMNS = ("url", "image", "image_path", "path", "filepath", "file")
CAPTION_COLUMNS = ("caption", "text", "txt")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MetadataFile:
    """One metadata file on local disk, its sha256, and the URL it came from (if any)."""

    path: Path
    sha256: str
    url: str | None = None


def resolve_cc12m(metadata: str | None, download_dir: Path) -> list[MetadataFile]:
    """The CC12M TSV: a local path, or a URL (default: Google's) downloaded into download_dir."""
    source = metadata or CC12M_URL
    if source.startswith(("http://", "https://")):
        path = _download(source, download_dir / Path(source.split("?")[0]).name)
        return [MetadataFile(path, sha256_file(path), source)]
    path = Path(source).expanduser().absolute()
    if not path.is_file():
        raise DataError(f"metadata {path}: no such file (pass --metadata a CC12M .tsv or a URL)")
    return [MetadataFile(path, sha256_file(path))]


def resolve_datacomp(metadata: list[Path] | None) -> list[MetadataFile]:
    """DataComp parquet files: given paths/directories, or the HF Hub `large` pool metadata."""
    if not metadata:
        metadata = [_download_datacomp_large()]
    files: list[Path] = []
    for entry in metadata:
        entry = Path(entry).expanduser().absolute()
        if entry.is_dir():
            found = sorted(entry.rglob("*.parquet"))
            if not found:
                raise DataError(f"metadata {entry}: directory holds no .parquet files")
            files.extend(found)
        elif entry.is_file():
            files.append(entry)
        else:
            raise DataError(f"metadata {entry}: no such file or directory (pass --metadata)")
    return [MetadataFile(path, sha256_file(path)) for path in files]


def read_cc12m(path: Path) -> pa.Table:
    """A headerless `url<TAB>caption` TSV (a `url caption` header line is tolerated)."""
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=["url", "caption"]),
            parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={"url": pa.string(), "caption": pa.string()},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as err:
        first = " ".join(str(err).split())[:160]
        raise DataError(
            f"metadata {path}: not a CC12M TSV with 2 tab-separated columns url, caption ({first})"
        ) from None
    if table.num_rows and table["url"][0].as_py() == "url":
        table = table.slice(1)
    return table


def read_datacomp(path: Path, blur_faces: bool) -> pa.Table:
    """uid, url, caption (from `text`) and, when blurring, face_bboxes of a DataComp parquet."""
    needed = [c for c in DATACOMP_COLUMNS if blur_faces or c != "face_bboxes"]
    try:
        columns = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"metadata {path}: not a parquet file ({err})") from None
    missing = [column for column in needed if column not in columns]
    if missing:
        raise DataError(
            f"metadata {path}: missing column(s) {', '.join(missing)} (DataComp metadata has "
            f"{', '.join(DATACOMP_COLUMNS)}; pass the pool's metadata parquet files)"
        )
    table = pq.read_table(path, columns=needed)
    return table.rename_columns(["caption" if c == "text" else c for c in table.column_names])


def read_caption_table(path: Path) -> pa.Table:
    """A user's CSV/TSV/parquet as (url, caption): the first image and caption column found.

    `url` holds whatever the image column holds (a URL or a path), so one reader serves both
    `pack` of local files and a custom web fetch.
    """
    table = _read_any_table(path)
    image = next((c for c in IMAGE_COLUMNS if c in table.column_names), None)
    caption = next((c for c in CAPTION_COLUMNS if c in table.column_names), None)
    if image is None or caption is None:
        raise DataError(
            f"table {path}: needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a caption "
            f"column ({'/'.join(CAPTION_COLUMNS)}); it has {', '.join(table.column_names)}"
        )
    return (
        table.select([image, caption])
        .rename_columns(["url", "caption"])
        .cast(pa.schema([("url", pa.string()), ("caption", pa.string())]))
    )


def _read_any_table(path: Path) -> pa.Table:
    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_table(path)
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        return pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"table {path}: unreadable ({' '.join(str(err).split())[:160]})") from None


def _download(url: str, target: Path) -> Path:
    """Download once (a finished file is reused), via a temp name so no partial file remains."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"metadata {url}: download failed ({err}); pass a local --metadata"
        ) from None
    partial.replace(target)
    return target


def _download_datacomp_large() -> Path:
    """The `large` pool's metadata parquets from the HF Hub (into the hub's own cache)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=DATACOMP_LARGE_REPO, repo_type="dataset", allow_patterns=["*.parquet"]
            )
        )
    except Exception as err:  # hub/network errors come in many types
        message = " ".join(str(err).split())[:200]
        raise DataError(
            f"metadata hf://datasets/{DATACOMP_LARGE_REPO}: download failed ({message}); "
            "pass --metadata with local parquet files"
        ) from None
