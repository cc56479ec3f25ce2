"""A torch DataLoader over a manifest's webdataset shards.

Workers decode images themselves (PIL, RGB) so that a bad sample is skipped and counted instead
of killing a multi-day run; the counts ride to the main process inside each batch (`skipped`),
and a failure rate above `max_failure_rate` stops the run with a DataError naming the manifest.

Each raw sample is augmented under its own torch seed, drawn from (seed, rank, worker, its index
in the worker's stream): ranks and workers draw different crops, a rerun draws the same ones, and
a resumed loader (`resume_samples`) passes over the samples already consumed without decoding
them yet draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import PIL.Image
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset import tariterators

from levl_data.errors import DataError
from levl_data.ffcv_loader import FfcvLoader, build_ffcv_loader
from levl_data.jsontext import parse_json
from levl_data.manifest import Manifest, read_manifest
from levl_data.position import POSITION_KEY, position_readers
from levl_data.seeds import hashed_seed, seeded_torch_rng
from levl_data.shardscan import sample_key

MIN_ATTEMPTS_FOR_RATE = 50
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm"})
_ERROR_KEY = "__levl_error__"
_INDEX_KEY = "__levl_index__"


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs to turn its shards into batches (copied into each worker)."""

    manifest_path: Path
    shard_urls: tuple[str, ...]
    shard_samples: Mapping[str, int]
    shard_sha256: Mapping[str, str]
    members: dict
    extra_members: tuple[str, ...]
    image_transform: Callable[[PIL.Image.Image], torch.Tensor]
    extra_transforms: Mapping[str, Callable] = field(default_factory=dict)
    batch_size: int = 1
    drop_last: bool = True
    shuffle_buffer: int = 0
    seed: int = 0
    rank: int = 0
    resample: bool = False
    max_failure_rate: float = 0.1
    first_worker: int = 0
    resume_samples: tuple[int, ...] = ()


class _SkipCounter:
    """Per-worker tally: totals for the failure-rate check, and the skips not yet reported in
    a batch (with their raw indices: a batch reports those before its position only)."""

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.attempted = 0
        self.skipped = 0
        self.total: Counter[str] = Counter()
        self.pending: list[tuple[int, str]] = []
        self.exhausted = False  # the worker's stream has ended: its last batch reports the rest

    def ok(self) -> None:
        self.attempted += 1

    def skip(self, reason: str, index: int) -> None:
        self.attempted += 1
        self.skipped += 1
        self.total[reason] += 1
        self.pending.append((index, reason))
        self._check_rate()

    def take(self, before: int) -> dict[str, int]:
        """The skips at raw indices below `before` (a batch's position), reported once: a
        loader resumed at that position starts past them and counts none of them again. After
        the stream's end every skip left is reported (a resume there gives no batch)."""
        if self.exhausted:
            before = sys.maxsize
        taken = Counter(reason for index, reason in self.pending if index < before)
        self.pending = [(index, reason) for index, reason in self.pending if index >= before]
        return dict(sorted(taken.items()))

    def _check_rate(self) -> None:
        if self.attempted < MIN_ATTEMPTS_FOR_RATE:
            return
        if self.skipped / self.attempted > self.plan.max_failure_rate:
            reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(self.total.items()))
            raise DataError(
                f"manifest {self.plan.manifest_path}: {self.skipped} of {self.attempted} samples "
                f"failed to load ({reasons}), above max_failure_rate={self.plan.max_failure_rate}; "
                f"run `levl-data verify {self.plan.manifest_path}` or raise max_failure_rate"
            )


class ShardStream(IterableDataset):
    """The per-worker webdataset pipeline: shards -> samples -> shuffle -> decode -> batches."""

    def __init__(self, plan: _Plan):
        super().__init__()
        self.plan = plan

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        try:
            yield from self._batches(*_logical_worker(self.plan, worker))
        except DataError as err:
            if worker is None:
                raise
            # A worker's exception reaches the main process wrapped in a multi-line traceback;
            # send the one-line message as data instead and let ShardLoader raise it.
            yield {_ERROR_KEY: str(err)}

    def _batches(self, worker_id: int, num_workers: int) -> Iterator[dict]:
        plan = self.plan
        counter = _SkipCounter(plan)
        stream_seed = _stream_seed(plan.seed, plan.rank, worker_id)
        stages: list[Any] = [*_shard_source(plan, worker_id, num_workers)]
        stages += _tar_stages(plan)
        if plan.shuffle_buffer > 0:
            stages.append(
                wds.shuffle(plan.shuffle_buffer, initial=plan.shuffle_buffer, seed=stream_seed)
            )
        stages.append(partial(_decode_stream, plan=plan, counter=counter, worker_id=worker_id))
        collate = partial(_collate, counter=counter, extra_members=plan.extra_members,
                          worker_id=worker_id)
        stages.append(
            wds.batched(plan.batch_size, collation_fn=collate, partial=not plan.drop_last)
        )
        yield from wds.DataPipeline(*stages)


class ShardLoader(DataLoader):
    """A DataLoader that re-raises a worker's DataError as the same one-line DataError."""

    manifest: Manifest

    def __iter__(self) -> Iterator[dict]:
        for batch in super().__iter__():
            if _ERROR_KEY in batch:
                raise DataError(batch[_ERROR_KEY])
            yield batch


def build_loader(
    manifest: Manifest | str | Path,
    *,
    batch_size: int,
    image_transform: Callable[[PIL.Image.Image], torch.Tensor],
    shuffle_buffer: int = 1000,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    resample: bool = False,
    drop_last: bool = True,
    extra_members: Sequence[str] = (),
    extra_transforms: Mapping[str, Callable] | None = None,
    max_failure_rate: float = 0.1,
    ffcv_image_pipeline: Sequence | None = None,
    pin_memory: bool = False,
    resume_samples: Sequence[int] = (),
    first_worker: int = 0,
    worker_init: Callable[[int], None] | None = None,
) -> ShardLoader | FfcvLoader:
    """A DataLoader of batch dicts over this rank's share of the manifest's shards.

    Shards go to ranks as `shards[rank::world_size]`, then to workers the same way.
    `shuffle_buffer=0` keeps the stored order; `resample=True` draws shards with replacement
    forever. The order is a pure function of (seed, rank, num_workers), so a run is reproducible;
    vary `seed` per epoch for a new order. Extra members: PNGs are decoded keeping their mode
    (masks), other images are converted to RGB, anything else is passed on as bytes; without
    an entry in `extra_transforms` an image goes through `image_transform`.

    A manifest of format `ffcv` is read by `levl_data.ffcv_loader` with the same batches
    (`ffcv_image_pipeline`, ffcv operations with the decoder first, replaces `image_transform`
    there for ffcv's own JIT-compiled decode and augmentation). `pin_memory` pins each batch
    (for a CUDA trainer's non-blocking host-to-device copies). `worker_init(worker_id)` runs
    first in each worker process (DataLoader's `worker_init_fn`; ffcv's readers are threads).

    Resuming: `resume_samples[w]` raw samples (the `position["samples"]` of worker w's last
    batch taken) are read past without decoding, and worker `first_worker` (the one after the
    last batch's `position["worker"]`) gives the first batch; the batches that follow are the
    ones the uninterrupted loader would have given next. An ffcv file has one reader
    (`levl_data.position`): its count skips that many samples of its passes' orders.
    """
    _check_options(batch_size, shuffle_buffer, num_workers, rank, world_size, max_failure_rate)
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    _check_resume(resume_samples, first_worker,
                  position_readers(manifest.data["format"], num_workers))
    if manifest.data["format"] == "ffcv":
        if extra_members:
            raise DataError(f"manifest {manifest.path}: an ffcv file takes no extra members; "
                            "read the webdataset shard set it was converted from")
        return build_ffcv_loader(
            manifest, batch_size=batch_size, image_transform=image_transform,
            image_pipeline=ffcv_image_pipeline, shuffle=shuffle_buffer > 0,
            num_workers=num_workers, seed=seed, rank=rank, world_size=world_size,
            resample=resample, drop_last=drop_last,
            resume_samples=resume_samples[0] if resume_samples else 0,
        )
    extra_transforms = dict(extra_transforms or {})
    _check_extra_members(manifest, extra_members, extra_transforms)
    plan = _Plan(
        manifest_path=manifest.path,
        shard_urls=_rank_shards(manifest, rank, world_size, resample),
        shard_samples={
            str(path): shard.num_samples
            for shard, path in zip(manifest.shards, manifest.shard_paths(), strict=True)
        },
        shard_sha256={
            str(path): shard.sha256
            for shard, path in zip(manifest.shards, manifest.shard_paths(), strict=True)
        },
        members=manifest.members,
        extra_members=tuple(extra_members),
        image_transform=image_transform,
        extra_transforms=extra_transforms,
        batch_size=batch_size,
        drop_last=drop_last,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        rank=rank,
        resample=resample,
        max_failure_rate=max_failure_rate,
        first_worker=first_worker,
        resume_samples=tuple(resume_samples),
    )
    loader = ShardLoader(
        ShardStream(plan),
        batch_size=None,
        num_workers=num_workers,
        # worker seeds (python's random in a transform) differ by rank too
        generator=torch.Generator().manual_seed(_stream_seed(seed, rank, -1)),
        pin_memory=pin_memory,
        worker_init_fn=worker_init,
    )
    loader.manifest = manifest
    return loader


def batch_name(member: str) -> str:
    """The batch key of a tar member: `mask.png` -> `mask_png`."""
    return member.replace(".", "_")


def _check_options(batch_size, shuffle_buffer, num_workers, rank, world_size, max_failure_rate):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle_buffer < 0 or num_workers < 0:
        raise ValueError("shuffle_buffer and num_workers must be >= 0")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    if not 0.0 <= max_failure_rate <= 1.0:
        raise ValueError(f"max_failure_rate must be in [0, 1], got {max_failure_rate}")


def _check_resume(resume_samples: Sequence[int], first_worker: int, workers: int) -> None:
    if resume_samples and len(resume_samples) != workers:
        raise ValueError(f"resume_samples needs one count per reader ({workers}), "
                         f"got {len(resume_samples)}")
    if any(count < 0 for count in resume_samples) or not 0 <= first_worker < workers:
        raise ValueError(f"need counts >= 0 and 0 <= first_worker < {workers}")


def _check_extra_members(manifest: Manifest, extra_members, extra_transforms) -> None:
    available = set(manifest.members.get("extra", []))
    for member in extra_members:
        if member not in available:
            raise DataError(
                f"manifest {manifest.path}: no extra member {member!r} "
                f"(it has {sorted(available) or 'none'}); drop it from extra_members"
            )
    unused = set(extra_transforms) - set(extra_members)
    if unused:
        raise ValueError(f"extra_transforms for members not in extra_members: {sorted(unused)}")


_T = TypeVar("_T")


def shards_of_rank(shards: Sequence[_T], rank: int, world_size: int) -> Sequence[_T]:
    """A rank's own share of a manifest's shards: every world_size-th, from its own index."""
    return shards[rank::world_size]


def _rank_shards(manifest: Manifest, rank: int, world_size: int, resample: bool) -> tuple[str, ...]:
    urls = [str(path) for path in manifest.shard_paths()]
    mine = shards_of_rank(urls, rank, world_size)
    if mine:
        return tuple(mine)
    if resample:
        return tuple(urls)  # too few shards to partition; ranks differ by seed instead
    raise DataError(
        f"manifest {manifest.path}: {len(urls)} shard(s) cannot be split over {world_size} ranks "
        f"(rank {rank} gets none); write more, smaller shards or use resample=True"
    )


def _logical_worker(plan: _Plan, worker: Any) -> tuple[int, int]:
    """(worker id, worker count) as the data sees them. A resumed loader rotates the ids by
    `first_worker`: the DataLoader asks its workers for batches in turn from worker 0, so the
    worker whose turn came next when the position was taken must be worker 0 now."""
    if worker is None:
        return 0, 1
    return (worker.id + plan.first_worker) % worker.num_workers, worker.num_workers


def _shard_source(plan: _Plan, worker_id: int, num_workers: int) -> list[Any]:
    if plan.resample:
        worker_seed = partial(_stream_seed, plan.seed, plan.rank, worker_id)
        return [
            wds.ResampledShards(
                list(plan.shard_urls), seed=plan.seed, worker_seed=worker_seed, deterministic=True
            )
        ]
    order_seed = plan.seed if plan.shuffle_buffer > 0 else None
    split = partial(_split_by_worker, worker_id=worker_id, num_workers=num_workers)
    return [wds.SimpleShardList(list(plan.shard_urls), seed=order_seed), split]


def _split_by_worker(sources: Iterator[dict], *, worker_id: int, num_workers: int
                     ) -> Iterator[dict]:
    """webdataset's split_by_worker by the logical worker id (`_logical_worker`)."""
    yield from itertools.islice(sources, worker_id, None, num_workers)


def _tar_stages(plan: _Plan) -> list[Any]:
    """webdataset's tarfile_to_samples, opened up to check each shard against the manifest.

    A truncated tar reads as a shorter valid tar, so without the check a damaged shard would
    silently drop samples (and eval would score a subset); a shard replaced after the manifest
    was written would be trained on while checkpoints record the manifest's fingerprint.
    """
    handler = partial(_raise_shard_error, plan.manifest_path)
    checks = _ShardCheck(plan)
    return [
        partial(tariterators.url_opener, handler=handler),
        checks.note_shard,
        partial(tariterators.tar_file_expander, handler=handler),
        checks.check_members,
        partial(tariterators.group_by_keys, handler=handler),
    ]


class _HashingReader:
    """A shard's file object that hashes the bytes read through it: the sha256 comes from the
    read that decodes the samples, with no second pass over the shard."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data

    def hexdigest(self) -> str:
        """The whole file's sha256: what the tar reader left unread (end padding) is read now."""
        while chunk := self.stream.read(1 << 20):
            self.digest.update(chunk)
        return self.digest.hexdigest()

    def close(self) -> None:
        self.stream.close()


class _ShardCheck:
    """At each shard's end: its sample count, and (the first time this worker reads it whole)
    its sha256, against the manifest's."""

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.url: str | None = None
        self.reader: _HashingReader | None = None
        self.verified: set[str] = set()  # shards re-read (resampling) are hashed once

    def note_shard(self, sources: Iterator[dict]) -> Iterator[dict]:
        for source in sources:
            # The expander reads this shard up to its end-of-shard marker before pulling the next.
            self.url, self.reader = source["url"], None
            if self.url not in self.verified:
                self.reader = source["stream"] = _HashingReader(source["stream"])
            yield source

    def check_members(self, files: Iterator[dict]) -> Iterator[dict]:
        count, previous = 0, None
        for item in files:
            if item == {}:  # tar_file_expander's end-of-shard marker
                self._compare(count)
                self._verify()
                count, previous = 0, None
            else:
                key = sample_key(item["fname"])
                if key != previous:
                    count, previous = count + 1, key
            yield item

    def _compare(self, count: int) -> None:
        expected = self.plan.shard_samples[self.url]
        if count != expected:
            raise DataError(
                f"manifest {self.plan.manifest_path}: shard {self.url} holds {count} samples, "
                f"the manifest says {expected} (truncated or replaced); run "
                f"`levl-data verify {self.plan.manifest_path}`"
            )

    def _verify(self) -> None:
        if self.reader is None:
            return
        actual, expected = self.reader.hexdigest(), self.plan.shard_sha256[self.url]
        if actual != expected:
            raise DataError(
                f"manifest {self.plan.manifest_path}: shard {self.url} has sha256 {actual}, the "
                f"manifest says {expected} (changed after the manifest was written); restore "
                f"the shard or re-pack, then run `levl-data verify {self.plan.manifest_path}`"
            )
        self.verified.add(self.url)


def _stream_seed(seed: int, rank: int, worker_id: int) -> int:
    """The shuffle and shard-order seed per (seed, rank, worker)."""
    return hashed_seed(seed, rank, worker_id)


def _sample_seed(seed: int, rank: int, worker_id: int, index: int) -> int:
    """The augmentation seed of a worker's index-th raw sample (see the module docstring)."""
    return hashed_seed("augment", seed, rank, worker_id, index)


def _raise_shard_error(manifest_path: Path, exn: Exception) -> bool:
    shard = next(
        (arg for arg in reversed(exn.args) if isinstance(arg, str) and arg.endswith(".tar")), None
    )
    detail = str(exn.args[0]).split(" @ ")[0] if exn.args else type(exn).__name__
    raise DataError(
        f"manifest {manifest_path}: shard {shard or '?'} is unreadable ({type(exn).__name__}: "
        f"{' '.join(detail.split())}); run `levl-data verify {manifest_path}`"
    ) from exn


def _decode_stream(
    samples: Iterator[dict], *, plan: _Plan, counter: _SkipCounter, worker_id: int
) -> Iterator[dict]:
    """Decode and augment, each sample under its own seed; a resumed loader reads past the
    samples consumed before (the shuffle buffer still needs their bytes) without decoding."""
    skip = plan.resume_samples[worker_id] if plan.resume_samples else 0
    for index, raw in enumerate(samples):
        if index < skip:
            continue
        with seeded_torch_rng(_sample_seed(plan.seed, plan.rank, worker_id, index)):
            sample, reason = _decode_sample(raw, plan)
        if reason is not None:
            counter.skip(reason, index)
            continue
        counter.ok()
        yield {**sample, _INDEX_KEY: index}
    counter.exhausted = True


def decode_raw_sample(
    raw: dict, members: dict, image_transform: Callable = lambda image: image
) -> tuple[dict | None, str | None]:
    """One raw tar sample (`__key__` and member -> bytes) decoded exactly as the loader does.

    Returns (sample, None) or (None, skip reason); a converter uses it to keep the same samples.
    """
    plan = _Plan(manifest_path=Path(), shard_urls=(), shard_samples={}, shard_sha256={},
                 members=members,
                 extra_members=(), image_transform=image_transform)
    return _decode_sample(raw, plan)


def _decode_sample(raw: dict, plan: _Plan) -> tuple[dict | None, str | None]:
    """One raw tar sample -> a ready sample, or (None, reason) when it must be skipped."""
    image_member, caption_member = plan.members["image"], plan.members["caption"]
    needed = (image_member, caption_member, *plan.extra_members)
    if any(member not in raw for member in needed):
        return None, "missing_member"
    try:
        caption = raw[caption_member].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "undecodable_caption"
    if not caption:
        return None, "empty_caption"
    image = _open_image(raw[image_member], keep_mode=False)
    if image is None:
        return None, "undecodable_image"
    meta, reason = _decode_meta(raw, plan.members.get("json"))
    if reason is not None:
        return None, reason
    extras = {}
    for member in plan.extra_members:
        value = _decode_extra(member, raw[member])
        if value is None:
            return None, "undecodable_image"
        extras[batch_name(member)] = _transform_extra(member, value, plan)
    sample = {
        "image": plan.image_transform(image),
        "caption": caption,
        "key": raw["__key__"],
        "meta": meta,
    }
    return {**sample, **extras}, None


def _open_image(data: bytes, *, keep_mode: bool) -> PIL.Image.Image | None:
    try:
        with PIL.Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.copy() if keep_mode else opened.convert("RGB")
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return None


def _decode_meta(raw: dict, json_member: str | None) -> tuple[dict, str | None]:
    if json_member is None or json_member not in raw:
        return {}, None
    try:
        meta = parse_json(raw[json_member])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}, "undecodable_json"
    return (meta, None) if isinstance(meta, dict) else ({}, "undecodable_json")


def _decode_extra(member: str, data: bytes) -> Any:
    extension = member.rsplit(".", 1)[-1].lower()
    if extension not in IMAGE_EXTENSIONS:
        return data
    return _open_image(data, keep_mode=extension == "png")


def _transform_extra(member: str, value: Any, plan: _Plan) -> Any:
    transform = plan.extra_transforms.get(member)
    if transform is not None:
        return transform(value)
    if isinstance(value, PIL.Image.Image):
        return plan.image_transform(value.convert("RGB"))
    return value


def _collate(samples: list[dict], *, counter: _SkipCounter, extra_members: tuple[str, ...],
             worker_id: int) -> dict:
    """Stack a batch; its position (worker, raw samples that worker consumed through its last
    sample) is what a resumed loader needs. Its `skipped` counts the bad samples before that
    position not counted yet; those after it (read ahead) go to the worker's next batch, or to
    this one when it is the worker's last."""
    batch = {
        "image": torch.stack([sample["image"] for sample in samples]),
        "caption": [sample["caption"] for sample in samples],
        "key": [sample["key"] for sample in samples],
        "meta": [sample["meta"] for sample in samples],
    }
    for member in extra_members:
        name = batch_name(member)
        values = [sample[name] for sample in samples]
        batch[name] = torch.stack(values) if all(torch.is_tensor(v) for v in values) else values
    position = samples[-1][_INDEX_KEY] + 1
    batch["skipped"] = counter.take(position)
    batch[POSITION_KEY] = {"worker": worker_id, "samples": position}
    return batch
