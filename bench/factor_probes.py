"""What a checkpoint's image tower knows of the synthetic world, and how far a linear map from
its image embedding to the captions' gets on retrieval.

With views that make it hue-invariant the demo's image→text R@1 sat near 1 % (README). Two
questions decide whether that is the encoder or the world: which of the world's factors the frozen features carry (a linear probe per
factor — main shape, colour, size, background, object count, second shape — with METHOD.md's
probe settings, trained on eval-train and scored on eval-test, for the checkpoint and a random
encoder of the same config), and what image→text recall a linear readout of z_v reaches when it
is fitted to the caption embeddings z_t of eval-train by ridge regression (the best linear
stand-in for the predictor pred_v), against the predictor's own readout.

    .venv/bin/python bench/factor_probes.py --ckpt demo-out/run --data demo-out/data
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from levl_data.loader import build_loader  # noqa: E402
from levl_eval.encoder import FrozenEncoder, load_frozen_checkpoint, random_encoder  # noqa: E402
from levl_eval.protocols.linear.protocol import LinearProbeSettings, linear_probe_metrics  # noqa: E402
from levl_eval.protocols.retrieval.protocol import retrieval_metrics  # noqa: E402
from levl_model.preprocess import eval_transform  # noqa: E402

FACTORS: dict[str, Callable[[dict], object]] = {
    "main shape": lambda meta: meta["objects"][0]["shape"],
    "main colour": lambda meta: meta["objects"][0]["color"],
    "main size": lambda meta: meta["objects"][0]["size"],
    "background": lambda meta: meta["background"],
    "object count": lambda meta: len(meta["objects"]),
    "second shape": lambda meta: meta["objects"][1]["shape"] if len(meta["objects"]) > 1 else "-",
}
RIDGE = (1.0, 10.0, 100.0)


@dataclass
class Split:
    cls_ND: torch.Tensor
    z_NE: torch.Tensor
    metas: list[dict]
    captions: list[str]


@torch.no_grad()
def image_split(encoder: FrozenEncoder, manifest: str) -> Split:
    """CLS and z_v of every image of a split, with its scene metadata and first caption."""
    loader = build_loader(manifest, batch_size=encoder.batch_size, shuffle_buffer=0,
                          image_transform=eval_transform(encoder.preprocess), drop_last=False)
    cls, z, metas, captions = [], [], [], []
    for batch in loader:
        features = encoder.model.encode_image(batch["image"])
        cls.append(features.cls_BD)
        z.append(features.z_BE)
        metas += batch["meta"]
        captions += [c if isinstance(c, str) else c[0] for c in batch["caption"]]
    return Split(torch.cat(cls), torch.cat(z), metas, captions)


@torch.no_grad()
def caption_embeddings(encoder: FrozenEncoder, captions: list[str]) -> torch.Tensor:
    rows = []
    for start in range(0, len(captions), encoder.batch_size):
        input_ids, mask = encoder.tokenizer(captions[start:start + encoder.batch_size])
        rows.append(encoder.model.encode_text(input_ids, mask).z_BE)
    return torch.cat(rows)


def probe_top1(train_ND, train_y: list, test_ND, test_y: list) -> float:
    classes = {value: i for i, value in enumerate(sorted(set(map(str, train_y + test_y))))}
    labels = [torch.tensor([classes[str(y)] for y in ys]) for ys in (train_y, test_y)]
    metrics = linear_probe_metrics(train_ND, labels[0], test_ND, labels[1], len(classes),
                                   LinearProbeSettings())
    return 100 * metrics["top1"]


def factor_rows(name: str, train: Split, test: Split) -> list[str]:
    rows = []
    for factor, read in FACTORS.items():
        train_y, test_y = [read(m) for m in train.metas], [read(m) for m in test.metas]
        majority = 100 * max(test_y.count(v) for v in set(test_y)) / len(test_y)
        rows.append(f"| {name} | {factor} | {probe_top1(train.cls_ND, train_y, test.cls_ND, test_y):.1f} "
                    f"| {probe_top1(train.z_NE, train_y, test.z_NE, test_y):.1f} | {majority:.1f} |")
    return rows


def ridge_map(x_ND: torch.Tensor, y_NE: torch.Tensor, lam: float) -> Callable:
    """Standardised ridge regression x -> y (closed form)."""
    mean, std = x_ND.mean(0), x_ND.std(0).clamp_min(1e-8)
    x = (x_ND - mean) / std
    weights = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ y_NE)
    return lambda rows: ((rows - mean) / std) @ weights


def text_factor_rows(text_train: torch.Tensor, text_test: torch.Tensor, train: Split,
                     test: Split) -> list[str]:
    """What the caption embeddings carry: the same probes on z_t of each image's caption."""
    rows = []
    for factor, read in FACTORS.items():
        train_y, test_y = [read(m) for m in train.metas], [read(m) for m in test.metas]
        rows.append(f"| {factor} | {probe_top1(text_train, train_y, text_test, test_y):.1f} |")
    return rows


def retrieval_rows(encoder: FrozenEncoder, text_train: torch.Tensor, text_test: torch.Tensor,
                   train: Split, test: Split) -> list[str]:
    text_train = F.normalize(text_train, dim=-1)
    image_of_text = torch.arange(len(test.captions))
    readouts = {}
    if encoder.model.has_predictors:
        with torch.no_grad():
            readouts["pred_v(z_v) · z_t (the predictor)"] = encoder.model.vision_pred(test.z_NE)
    for lam in RIDGE:
        readouts[f"ridge(z_v) · z_t, λ {lam:g}"] = ridge_map(train.z_NE, text_train, lam)(test.z_NE)
    rows = []
    for name, image_NE in readouts.items():
        metrics = retrieval_metrics(image_NE, text_test, image_of_text)
        rows.append(f"| {name} | {100 * metrics['i2t_r1']:.1f} | {100 * metrics['i2t_r10']:.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a run dir or checkpoint dir")
    parser.add_argument("--data", required=True, help="levl-data synth's output dir")
    parser.add_argument("--seed", type=int, default=0, help="the random encoder's seed")
    args = parser.parse_args(argv)
    describe_machine(sys.argv if argv is None else [__file__, *argv])
    trained, spec = load_frozen_checkpoint(args.ckpt, device="cpu", batch_size=250)
    random = random_encoder(spec, seed=args.seed, name="random", device="cpu", batch_size=250)
    print("| encoder | factor | CLS probe top-1 % | z_v probe top-1 % | majority % |\n"
          "|---|---|---|---|---|")
    for name, encoder in (("trained", trained), ("random", random)):
        train = image_split(encoder, f"{args.data}/eval-train/manifest.json")
        test = image_split(encoder, f"{args.data}/eval-test/manifest.json")
        print("\n".join(factor_rows(name, train, test)), flush=True)
        if encoder is trained:
            trained_splits = train, test
    train, test = trained_splits
    text_train = caption_embeddings(trained, train.captions)
    text_test = caption_embeddings(trained, test.captions)
    print("\n| factor | trained z_t (caption) probe top-1 % |\n|---|---|")
    print("\n".join(text_factor_rows(text_train, text_test, train, test)))
    print("\n| trained encoder's image→text readout | R@1 % | R@10 % |\n|---|---|---|")
    print("\n".join(retrieval_rows(trained, text_train, text_test, train, test)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
