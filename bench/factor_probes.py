"""What a checkpoint's features carry of the synthetic world, and how far a linear map from its
image embedding to the captions' gets on retrieval.

Two questions decide whether a low image->text R@1 is the encoder or the world (with views that
made it hue-invariant, at `data.hue_jitter=0.5`, the demo's sat near 1 %): which factors of the
world the frozen features carry, and what recall a linear readout of z_v reaches.

- A linear probe per factor (main shape, colour, size, background, object count, second shape)
  with METHOD.md's probe (`levl_eval`'s: no bias, so the majority class is no floor), trained on
  eval-train and scored on eval-test, on CLS and z_v of the checkpoint and of a random encoder of
  the same config, and on the checkpoint's z_t of each image's caption. The world draws each
  shape's typical background 80 % of the time, so shape and background each predict the other:
  both are also scored on the test images whose background is not their shape's typical one.
- Image->text R@1 / R@10 of a ridge regression (with intercept) from z_v to the checkpoint's
  caption embeddings z_t, fitted on eval-train's pairs: the best linear stand-in for the
  predictor pred_v, against pred_v itself, and from the random encoder's z_v as the control.

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
from levl_eval.protocols.linear.protocol import FittedProbe, LinearProbeSettings  # noqa: E402
from levl_eval.protocols.retrieval.protocol import retrieval_metrics  # noqa: E402
from levl_eval.report import markdown_table  # noqa: E402
from levl_model.preprocess import eval_transform  # noqa: E402

FACTORS: dict[str, Callable[[dict], object]] = {
    "main shape": lambda meta: meta["objects"][0]["shape"],
    "main colour": lambda meta: meta["objects"][0]["color"],
    "main size": lambda meta: meta["objects"][0]["size"],
    "background": lambda meta: meta["background"],
    "object count": lambda meta: len(meta["objects"]),
    "second shape": lambda meta: meta["objects"][1]["shape"] if len(meta["objects"]) > 1 else "-",
}
# scored again on the atypical-background test images only: they predict each other otherwise
CONFOUNDED = ("main shape", "background")
RIDGE = (1.0, 10.0, 100.0)


@dataclass
class Split:
    """One split's frozen image features with what the probes need of each image."""

    cls_ND: torch.Tensor
    z_NE: torch.Tensor
    metas: list[dict]
    captions: list[str]

    def labels(self, factor: str) -> list:
        return [FACTORS[factor](meta) for meta in self.metas]

    def atypical(self) -> torch.Tensor:
        return torch.tensor([not meta["typical_background"] for meta in self.metas])


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


def probe_scores(train_ND: torch.Tensor, train_y: list, test_ND: torch.Tensor, test_y: list,
                 subsets: list[torch.Tensor]) -> list[float]:
    """Top-1 % of METHOD.md's linear probe, fitted once on the train split, on each boolean
    subset of the test rows."""
    classes = {value: i for i, value in enumerate(sorted(set(map(str, train_y + test_y))))}
    train_N, test_N = (torch.tensor([classes[str(y)] for y in ys]) for ys in (train_y, test_y))
    fitted = FittedProbe.fit(train_ND, train_N, len(classes), LinearProbeSettings())
    return [100 * fitted.metrics(test_ND[rows], test_N[rows])["top1"] for rows in subsets]


def majority_share(labels: list, rows: torch.Tensor) -> float:
    kept = [label for label, keep in zip(labels, rows.tolist(), strict=True) if keep]
    return 100 * max(kept.count(value) for value in set(kept)) / len(kept)


def feature_rows(train_features: dict[str, torch.Tensor], test_features: dict[str, torch.Tensor],
                 train: Split, test: Split) -> list[list[str]]:
    """One row per factor (and per confounded factor on atypical backgrounds): the probe on
    each named feature, then the majority class's share of the test images."""
    every = torch.ones(len(test.metas), dtype=torch.bool)
    rows = []
    for factor in FACTORS:
        subsets = {factor: every}
        if factor in CONFOUNDED:
            subsets[f"{factor}, atypical background"] = test.atypical()
        test_y = test.labels(factor)
        scores = [probe_scores(train_features[name], train.labels(factor), test_features[name],
                               test_y, list(subsets.values()))
                  for name in train_features]
        for column, (row_name, subset) in enumerate(subsets.items()):
            rows.append([row_name, *(f"{by_feature[column]:.1f}" for by_feature in scores),
                         f"{majority_share(test_y, subset):.1f}"])
    return rows


def ridge_map(x_ND: torch.Tensor, y_NE: torch.Tensor, lam: float) -> Callable:
    """Ridge regression x -> y in closed form, x standardised and y centred (an intercept)."""
    x_mean, x_std, y_mean = x_ND.mean(0), x_ND.std(0).clamp_min(1e-8), y_NE.mean(0)
    x = (x_ND - x_mean) / x_std
    weights = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ (y_NE - y_mean))
    return lambda rows: ((rows - x_mean) / x_std) @ weights + y_mean


def retrieval_rows(trained: FrozenEncoder, splits: dict[str, tuple[Split, Split]],
                   text_train: torch.Tensor, text_test: torch.Tensor) -> list[str]:
    """Image->text recall over the test captions: the predictor, then ridge maps from each
    encoder's z_v to the trained caption embeddings."""
    target = F.normalize(text_train, dim=-1)
    image_of_text = torch.arange(text_test.shape[0])
    readouts = {}
    if trained.model.has_predictors:
        with torch.no_grad():
            readouts["pred_v(z_v) · z_t, the predictor"] = trained.model.vision_pred(
                splits["trained"][1].z_NE)
    for name, (train, test) in splits.items():
        for lam in RIDGE:
            readouts[f"ridge({name} z_v) · z_t, λ {lam:g}"] = ridge_map(train.z_NE, target,
                                                                        lam)(test.z_NE)
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
    splits = {name: tuple(image_split(encoder, f"{args.data}/{split}/manifest.json")
                          for split in ("eval-train", "eval-test"))
              for name, encoder in (("trained", trained), ("random", random))}
    (train, test), (random_train, random_test) = splits["trained"], splits["random"]
    text_train = trained.text_features(tuple(train.captions)).z_ME
    text_test = trained.text_features(tuple(test.captions)).z_ME
    features = ({"trained CLS": train.cls_ND, "trained z_v": train.z_NE,
                 "random CLS": random_train.cls_ND, "random z_v": random_train.z_NE,
                 "trained z_t of the caption": text_train},
                {"trained CLS": test.cls_ND, "trained z_v": test.z_NE,
                 "random CLS": random_test.cls_ND, "random z_v": random_test.z_NE,
                 "trained z_t of the caption": text_test})
    header = ["factor", *(f"{name} %" for name in features[0]), "majority class %"]
    print("\nlinear probe top-1 on eval-test\n")
    print("\n".join(markdown_table(header, feature_rows(*features, train, test))))
    print("\n| image→text readout | R@1 % | R@10 % |\n|---|---|---|")
    print("\n".join(retrieval_rows(trained, splits, text_train, text_test)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
