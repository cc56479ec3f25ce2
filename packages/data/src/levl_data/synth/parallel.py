"""Produce a split's samples in index order, in this process or in a small process pool.

Samples are pure functions of (seed, split, index), so farming index chunks out to workers and
reading them back in order gives exactly the bytes a single process would.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

from levl_data.synth.sample import make_sample

CHUNK = 250


def _chunk(args: tuple[int, str, int, int, int, bool]) -> list[dict]:
    seed, split, start, stop, image_size, extras = args
    return [make_sample(seed, split, i, image_size, extras=extras) for i in range(start, stop)]


def generate_samples(seed: int, split: str, n: int, image_size: int, *, extras: bool,
                     workers: int = 1) -> Iterator[dict]:
    """Samples 0..n-1 of a split, in order; `workers` > 1 uses a spawned process pool."""
    if workers <= 1 or n <= CHUNK:
        for i in range(n):
            yield make_sample(seed, split, i, image_size, extras=extras)
        return
    jobs = [(seed, split, start, min(start + CHUNK, n), image_size, extras)
            for start in range(0, n, CHUNK)]
    # spawn, not fork: the parent may hold torch / loader threads that must not be forked.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for chunk in pool.imap(_chunk, jobs):
            yield from chunk
