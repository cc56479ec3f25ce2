"""What an encoder that knows only some factors of the synthetic world can score on retrieval.

An oracle that sees one factor of each image exactly (its main shape, say) and nothing else
ranks first the captions of every image that shares that factor, in random order among them: its
expected image->text R@k is the mean over images of min(k / n, 1), where n is how many images of
the split share the image's factor (its own among them). It says where an encoder that reads
that factor and nothing else lands. An encoder made hue-invariant by its views (the demo's
recipe with `data.hue_jitter=0.5`) reads mainly the background, and through it the main shape
(`bench/factor_probes.py`); the main shape + background oracle bounds it.

    .venv/bin/python bench/retrieval_oracles.py demo-out/data/eval-test/manifest.json
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable

import torch

from levl_data.loader import build_loader

ORACLES: dict[str, Callable[[dict], object]] = {
    "main shape": lambda meta: meta["objects"][0]["shape"],
    "main shape + size": lambda meta: (meta["objects"][0]["shape"], meta["objects"][0]["size"]),
    "every shape (no colour)": lambda meta: tuple(sorted(o["shape"] for o in meta["objects"])),
    "main shape + colour": lambda meta: (meta["objects"][0]["shape"],
                                         meta["objects"][0]["color"]),
    "main shape + background": lambda meta: (meta["objects"][0]["shape"], meta["background"]),
    "every shape + background": lambda meta: (tuple(sorted(o["shape"] for o in meta["objects"])),
                                              meta["background"]),
}


def expected_recall(keys: list, k: int) -> float:
    """Expected R@k of ranking by `keys` alone, ties in random order."""
    sharing = Counter(keys)
    return sum(min(k / sharing[key], 1.0) for key in keys) / len(keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="a synthetic split's manifest (levl-data synth)")
    args = parser.parse_args(argv)
    loader = build_loader(args.manifest, batch_size=256, image_transform=lambda _: torch.zeros(1),
                          shuffle_buffer=0, drop_last=False)
    metas = [meta for batch in loader for meta in batch["meta"]]
    print(f"{len(metas)} images\n\n| oracle | i->t R@1 % | i->t R@10 % |\n|---|---|---|")
    for name, factor in ORACLES.items():
        keys = [factor(meta) for meta in metas]
        print(f"| {name} | {100 * expected_recall(keys, 1):.2f} "
              f"| {100 * expected_recall(keys, 10):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
