"""A progress bar for a fetch: shards finished, samples written, failures, on the terminal.

img2dataset's own output goes to the work dir's log (its per-process bars would interleave), so
without this a fetch that runs for hours shows nothing. The bar follows the `NNNNN_stats.json`
files img2dataset writes as each shard finishes, polled from a thread, and draws on a duplicate
of the terminal's stderr taken before img2dataset's output is redirected. Like tqdm's other
bars in levl it is silent when stderr is not a terminal (batch logs).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tqdm import tqdm

from levl_data.errors import DataError
from levl_data.fetch.stats import read_shard_stats

POLL_SECONDS = 1.0


class FetchProgress:
    """`with FetchProgress(out_dir, expected, kept):` around the download."""

    def __init__(self, out_dir: Path, expected: set[str], kept: set[str]):
        self.out_dir, self.expected = out_dir, expected
        self.seen = set(kept)
        self.written = self.failed = 0
        self._stop = threading.Event()

    def __enter__(self) -> FetchProgress:
        self._stream = os.fdopen(os.dup(2), "w", encoding="utf-8", buffering=1)
        self._bar = tqdm(total=len(self.expected), initial=len(self.seen), unit="shard",
                         desc="fetch", file=self._stream, disable=None)
        self._thread = threading.Thread(target=self._follow, name="levl-fetch-progress",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        self._bar.close()
        self._stream.close()

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        """Count the shards whose stats appeared since the last poll."""
        for stats_file in sorted(self.out_dir.glob("*_stats.json")):
            name = stats_file.name.removesuffix("_stats.json")
            if name in self.seen or name not in self.expected:
                continue
            try:
                stats = read_shard_stats(stats_file)
            except DataError:  # being written: counted on a later poll
                continue
            self.seen.add(name)
            self.written += stats["successes"]
            self.failed += stats["count"] - stats["successes"]
            self._bar.update(1)
            self._bar.set_postfix(written=self.written, failed=self.failed, refresh=False)
