"""Batches from a levl ffcv file, shaped like the webdataset loader's (`levl_data.loader`).

ffcv decodes in numba-compiled threads; its batches live in buffers it reuses, so every tensor
handed out here is a copy. Bad samples were dropped (and counted in the manifest) at conversion,
so `skipped` is always empty. With `image_transform` the images are decoded whole and passed as
PIL images, exactly as from tars, which ffcv can do only when every image has the same size;
with `image_pipeline` ffcv's own decoder and transforms (e.g. a random resized crop) run instead.
Each batch reports its position (`levl_data.position`): the samples of this rank's passes taken
so far, from which a resumed loader starts without reading what came before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import PIL.Image
import torch

from levl_data.errors import DataError
from levl_data.ffcv_format import import_ffcv
from levl_data.manifest import Manifest
from levl_data.position import POSITION_KEY
from levl_data.seeds import hashed_seed, seeded_torch_rng


class FfcvLoader:
    """An iterable of batch dicts (`image`, `caption`, `key`, `meta`, `skipped`) over an ffcv file.

    One pass over this rank's samples, or (resample=True) endless passes, each in a new order.
    `resume_samples` (a batch's position `samples`) starts the first iteration where that batch
    left off: its pass, past the samples of it already taken, none of them read.
    """

    def __init__(self, manifest: Manifest, loader, image_transform: Callable | None,
                 resample: bool, seed: int = 0, resume_samples: int = 0):
        self.manifest = manifest
        self.loader = loader
        self.image_transform = image_transform
        self.resample = resample
        self.seed = seed
        self.resume_samples = resume_samples

    def __len__(self) -> int:
        """Batches per pass."""
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        per_pass = min(len(self.loader) * self.loader.batch_size, len(self.loader.indices))
        start, self.resume_samples = self.resume_samples, 0  # later: on from ffcv's pass count
        if start >= per_pass and not self.resample:
            self.loader.next_epoch += 1  # the resumed pass was over: a later one is the next
            return
        if start:
            self.loader.next_epoch = start // per_pass
        skip = start % per_pass
        while True:
            number = self.loader.next_epoch  # ffcv's own pass count: it orders the pass
            taken = (number * per_pass if self.resample else 0) + skip
            epoch = self._pass(number, skip, per_pass)
            try:
                for fields in epoch:
                    batch = self._batch(*fields, number)
                    taken += len(batch["key"])
                    batch[POSITION_KEY] = {"worker": 0, "samples": taken}
                    yield batch
            finally:
                # ffcv prefetches in a daemon thread that would poll forever (holding its
                # batch buffers) after a consumer stops early, e.g. a training stream's epoch
                epoch.close()
            if not self.resample:
                return
            skip = 0

    def _pass(self, number: int, skip: int, per_pass: int):
        """ffcv's iterator over pass `number` less its first `skip` samples (ffcv cannot start
        a pass midway: its Loader reads the pass's order from `traversal_order` when iterated)."""
        order = self.loader.traversal_order
        self.loader.traversal_order = _Skipping(order, number, skip, per_pass)
        try:
            return iter(self.loader)
        finally:
            self.loader.traversal_order = order

    def _batch(self, images, captions, keys, metas, epoch: int) -> dict:
        from ffcv.fields import JSONField

        keys = JSONField.unpack(keys)
        if self.image_transform is None:
            image = torch.as_tensor(images).clone()
        else:
            image = torch.stack([self._transformed(pixels, key, epoch)
                                 for pixels, key in zip(images, keys, strict=True)])
        return {
            "image": image,
            "caption": JSONField.unpack(captions),
            "key": keys,
            "meta": JSONField.unpack(metas),
            "skipped": {},
        }

    def _transformed(self, pixels, key: str, epoch: int) -> torch.Tensor:
        """One image through `image_transform`, its random draws seeded by (seed, pass, sample
        key): every rank and every pass augments each sample its own way, a rerun the same."""
        with seeded_torch_rng(hashed_seed("augment-ffcv", self.seed, epoch, key)):
            return self.image_transform(PIL.Image.fromarray(np.asarray(pixels)))


def build_ffcv_loader(
    manifest: Manifest, *, batch_size: int, image_transform: Callable | None,
    image_pipeline: Sequence | None = None, shuffle: bool = True, num_workers: int = 0,
    seed: int = 0, rank: int = 0, world_size: int = 1, resample: bool = False,
    drop_last: bool = True, resume_samples: int = 0,
) -> FfcvLoader:
    """This rank's samples (`index % world_size == rank`) of the manifest's `.beton`.

    `num_workers` is ffcv's decode threads (0 means one). The order is a pure function of
    (seed, rank): sequential without `shuffle`, else a fresh permutation per pass.
    """
    import_ffcv()
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    beton = manifest.shard_paths()[0]
    indices = np.arange(manifest.num_samples)[rank::world_size]
    if len(indices) == 0:
        raise DataError(
            f"manifest {manifest.path}: {manifest.num_samples} sample(s) cannot be split over "
            f"{world_size} ranks (rank {rank} gets none); use fewer ranks"
        )
    if image_pipeline is None:
        _check_uniform_size(manifest)
        image_pipeline = [SimpleRGBImageDecoder()]
        keep_transform = image_transform
    else:
        keep_transform = None
    loader = Loader(
        str(beton), batch_size=batch_size, num_workers=max(1, num_workers),
        order=OrderOption.RANDOM if shuffle else OrderOption.SEQUENTIAL,
        seed=_order_seed(seed, rank), indices=indices, drop_last=drop_last,
        pipelines={"image": list(image_pipeline)},
    )
    if drop_last and resume_samples % batch_size:
        raise DataError(
            f"manifest {manifest.path}: resume position {resume_samples} is not a whole number "
            f"of batches of {batch_size}; resume from a checkpoint the run wrote")
    if len(loader) == 0:
        raise DataError(
            f"manifest {manifest.path}: rank {rank} gets {len(indices)} sample(s), less than one "
            f"batch of {batch_size}; lower the batch size or use fewer ranks")
    return FfcvLoader(manifest, loader, keep_transform, resample, seed, resume_samples)


class _Skipping:
    """An ffcv traversal order whose pass `number` lacks its first `skip` samples."""

    def __init__(self, order, number: int, skip: int, per_pass: int):
        self.order, self.number, self.skip, self.per_pass = order, number, skip, per_pass

    def sample_order(self, epoch: int) -> np.ndarray:
        order = self.order.sample_order(epoch)
        return order[:self.per_pass][self.skip:] if epoch == self.number else order


def spread_captions_and_sizes(
    manifest: Manifest, limit: int
) -> Iterator[tuple[str, tuple[int, int]]]:
    """(caption, (width, height)) of up to `limit` evenly spaced samples; no image decoded."""
    import_ffcv()
    from ffcv.fields import JSONField
    from ffcv.loader import Loader, OrderOption

    if limit <= 0:
        return
    image = _image_metadata(manifest)
    indices = np.unique(np.linspace(0, len(image) - 1, min(limit, len(image))).astype(np.int64))
    loader = Loader(
        str(manifest.shard_paths()[0]), batch_size=256, num_workers=1,
        order=OrderOption.SEQUENTIAL, indices=indices, drop_last=False,
        pipelines={"image": None, "key": None, "json": None},
    )
    captions = [caption for (batch,) in loader for caption in JSONField.unpack(batch)]
    for index, caption in zip(indices, captions, strict=True):
        yield caption, (int(image["width"][index]), int(image["height"][index]))


def _image_metadata(manifest: Manifest) -> np.ndarray:
    """The image field's per-sample metadata (mode, width, height, pointer)."""
    from ffcv.reader import Reader

    reader = Reader(str(manifest.shard_paths()[0]))
    # ffcv names metadata columns by position (f0, f1, ...), not by field name
    return reader.metadata[reader.metadata.dtype.names[reader.field_names.index("image")]]


def _check_uniform_size(manifest: Manifest) -> None:
    """Whole-image decoding into one batch buffer needs one size; say what to do otherwise."""
    image = _image_metadata(manifest)
    sizes = {(int(image["height"].min()), int(image["width"].min())),
             (int(image["height"].max()), int(image["width"].max()))}
    if len(sizes) > 1:
        raise DataError(
            f"manifest {manifest.path}: its ffcv images vary in size, so they cannot be decoded "
            "whole; pass ffcv_image_pipeline (e.g. [RandomResizedCropRGBImageDecoder((224, 224))])"
            " or read the webdataset shards"
        )


def _order_seed(seed: int, rank: int) -> int:
    """A stable 31-bit seed per (seed, rank); ffcv adds the pass number to it."""
    digest = hashlib.sha256(f"levl-ffcv/{seed}/{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1
