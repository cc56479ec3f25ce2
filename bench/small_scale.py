"""LeVLJEPA at small scale: which settings make it learn cross-modal alignment on a CPU in minutes.

Each variant is one `levl-train run RECIPE --set ...` on a train split; the trained encoder and
the same model at its random init are then measured on a held-out labelled split (the synthetic
world's eval-test, or the photo set's val):

- predictor cosine, matched vs shuffled pairs: cos(pred_v(z_v), z_t) for an image and its own
  caption vs the next image's caption (alignment without negatives is real only if the first
  clearly exceeds the second);
- zero-shot top-1 against the split's class prompts, the mean of the three cosine readouts
  (z_v·z_t, pred_v·z_t, z_v·pred_t): levl-eval's zero-shot headline, computed by its code;
- image->text R@1 / R@10 over the split's captions, same readout, by levl-eval's retrieval code;
- effective rank of z_v and z_t;
- a ridge-regression probe's top-1 on the CLS token (fit on a labelled train split, standardised
  features): does the image tower itself see the classes, whatever the text side does.

    .venv/bin/python bench/small_scale.py --grid synthetic           # the search (synthetic world)
    .venv/bin/python bench/small_scale.py --grid custom --photos     # small_custom on real photos
    .venv/bin/python bench/small_scale.py --recipe tiny_synthetic --set objective.lambda_v=0.1

docs/small-scale.md records what was tried, what won and by how much.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

BIN = Path(sys.executable).parent

# The search's base: tiny_synthetic as it was before it (16-px patches, one view, the default
# augmentation), at screening length (600 steps of batch 128).
BASE = ["steps=600", "model.vision.patch_size=16", "data.views=1", "data.local_views=0",
        "objective.lambda_multi=0",
        "data.crop_scale_min=0.8", "data.hue_jitter=0", "data.grayscale_p=0"]

# name -> (recipe, --set list). Each grid varies one knob at a time against its first row.
GRIDS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "synthetic": {
        "before": ("tiny_synthetic", BASE),
        "patch 8": ("tiny_synthetic", [*BASE, "model.vision.patch_size=8"]),
        "lambda 0.1": ("tiny_synthetic", [*BASE, "objective.lambda_v=0.1", "objective.lambda_t=0.1"]),
        "lr 3e-3": ("tiny_synthetic", [*BASE, "optim.lr=3e-3"]),
        "lr 3e-4": ("tiny_synthetic", [*BASE, "optim.lr=3e-4"]),
        "cosine prediction": ("tiny_synthetic", [*BASE, "objective.pred_loss=cosine"]),
        "1024 slices": ("tiny_synthetic", [*BASE, "objective.num_slices=1024"]),
        "patch 8 + cosine": ("tiny_synthetic", [*BASE, "model.vision.patch_size=8",
                                                "objective.pred_loss=cosine"]),
        "infonce (reference)": ("tiny_synthetic", [*BASE, "objective.name=infonce"]),
    },
    "custom": {
        "small_custom": ("small_custom", []),
    },
}


def train(recipe: str, sets: list[str], manifest: Path, out: Path) -> float:
    """Run levl-train as a user does; returns wall seconds."""
    shutil.rmtree(out, ignore_errors=True)  # this bench's own earlier run
    command = [str(BIN / "levl-train"), "run", recipe, "--data", str(manifest), "--out", str(out),
               "--set", "device=cpu", *[arg for item in sets for arg in ("--set", item)]]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: levl-train {recipe} {sets} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


@torch.no_grad()
def measure(model, preprocess, tokenizer, val_manifest: Path) -> dict[str, float]:
    """The held-out figures of one model (see the module docstring)."""
    from levl_data.loader import build_loader
    from levl_data.manifest import read_manifest
    from levl_eval.features.types import ClassTextFeatures, SplitFeatures
    from levl_eval.protocols.retrieval.protocol import readout_pairs, readout_ranks, recall_metrics
    from levl_eval.protocols.zeroshot.protocol import HEADLINE_READOUT, zeroshot_logits
    from levl_train.metrics import effective_rank, matched_vs_shuffled_cosine

    model.eval()
    # a model without predictors (the InfoNCE reference) is read out through z itself: its
    # "pred cos" is cos(z_v, z_t) and every readout is z_v·z_t
    vision_pred, text_pred = ((model.vision_pred, model.text_pred) if model.has_predictors
                              else (torch.nn.Identity(), torch.nn.Identity()))

    def encode_text(captions: list[str]) -> dict[str, torch.Tensor]:
        z = model.encode_text(*tokenizer(captions)).z_BE
        return {"z": z, "pred": text_pred(z)}

    images, texts, labels = [], [], []
    loader = build_loader(val_manifest, batch_size=100, image_transform=preprocess,
                          shuffle_buffer=0, drop_last=False)
    for batch in loader:
        z = model.encode_image(batch["image"]).z_BE
        images.append({"z": z, "pred": vision_pred(z)})
        texts.append(encode_text(list(batch["caption"])))
        labels += [meta["label"] for meta in batch["meta"]]
    image = {key: torch.cat([part[key] for part in images]) for key in ("z", "pred")}
    text = {key: torch.cat([part[key] for part in texts]) for key in ("z", "pred")}
    task = read_manifest(val_manifest).labels
    prompts = [[template.format(name) for template in task["prompts"]] for name in task["classes"]]
    per_prompt = [encode_text(class_prompts) for class_prompts in prompts]
    class_text = ClassTextFeatures(*(torch.stack([p[key] for p in per_prompt])
                                     for key in ("z", "pred")))
    labels_N = torch.tensor(labels)
    split = SplitFeatures(image["z"], image["z"], image["pred"], labels_N)  # cls unused here
    logits_NC = zeroshot_logits(split, class_text)[HEADLINE_READOUT]
    pairs = readout_pairs(image["z"], image["pred"], text["z"], text["pred"])[HEADLINE_READOUT]
    recall = recall_metrics(readout_ranks(pairs, torch.arange(len(labels))))
    matched, shuffled = matched_vs_shuffled_cosine(image["pred"], text["z"])
    return {"pred_cos": matched, "pred_cos_shuffled": shuffled,
            "zeroshot": float((logits_NC.argmax(dim=1) == labels_N).float().mean()),
            "i2t_r1": recall["i2t_r1"], "i2t_r10": recall["i2t_r10"],
            "erank_v": effective_rank(image["z"]), "erank_t": effective_rank(text["z"])}


@torch.no_grad()
def cls_features(model, preprocess, manifest: Path, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    from levl_data.loader import build_loader

    feats, labels = [], []
    loader = build_loader(manifest, batch_size=100, image_transform=preprocess, shuffle_buffer=0,
                          drop_last=False)
    for batch in loader:
        feats.append(model.encode_image(batch["image"]).cls_BD)
        labels += [meta["label"] for meta in batch["meta"]]
        if len(labels) >= limit:
            break
    return torch.cat(feats)[:limit].double(), torch.tensor(labels[:limit])


def ridge_probe(model, preprocess, fit_manifest: Path, val_manifest: Path, ridge: float = 1.0) -> float:
    """Top-1 of a closed-form ridge classifier (one-hot targets) on standardised CLS features."""
    model.eval()
    x_fit, y_fit = cls_features(model, preprocess, fit_manifest, 2000)
    x_val, y_val = cls_features(model, preprocess, val_manifest, 10**9)
    mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-8)
    x_fit, x_val = (x_fit - mean) / std, (x_val - mean) / std
    x_fit, x_val = (F.pad(x, (0, 1), value=1.0) for x in (x_fit, x_val))
    targets = F.one_hot(y_fit, int(max(y_fit.max(), y_val.max())) + 1).double()
    gram = x_fit.T @ x_fit + ridge * torch.eye(x_fit.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, x_fit.T @ targets)
    return float(((x_val @ weights).argmax(dim=1) == y_val).double().mean())


def measure_run(run: Path, val_manifest: Path, fit_manifest: Path) -> tuple[dict[str, float], dict[str, float]]:
    """(trained, random init of the same model and seed) held-out figures."""
    from levl_model.checkpoint import load_checkpoint, read_metadata
    from levl_model.model import build_model
    from levl_model.preprocess import eval_transform
    from levl_model.tokenizer import load_tokenizer

    loaded = load_checkpoint(run)
    seed = int(read_metadata(run).get("train_config", {}).get("seed", 0))
    tokenizer = load_tokenizer("offline", max_length=loaded.model_config.text.max_length)
    preprocess = eval_transform(loaded.preprocess)
    random = build_model(loaded.model_config, seed=seed)
    results = []
    for model in (loaded.model, random):
        figures = measure(model, preprocess, tokenizer, val_manifest)
        figures["probe"] = ridge_probe(model, preprocess, fit_manifest, val_manifest)
        results.append(figures)
    return results[0], results[1]


def final_record(run: Path) -> dict:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def row(name: str, seed: int, seconds: float, trained: dict, random: dict, last: dict) -> str:
    return (f"| {name} | {seed} | {seconds / 60:.1f} | {last['loss']:.3f} | "
            f"{trained['pred_cos']:.3f} / {trained['pred_cos_shuffled']:.3f} | "
            f"{100 * trained['zeroshot']:.1f} ({100 * random['zeroshot']:.1f}) | "
            f"{100 * trained['i2t_r1']:.1f} / {100 * trained['i2t_r10']:.1f} "
            f"({100 * random['i2t_r10']:.1f}) | "
            f"{trained['erank_v']:.1f} / {trained['erank_t']:.1f} | "
            f"{100 * trained['probe']:.1f} ({100 * random['probe']:.1f}) |")


HEADER = ("| variant | seed | train min | final loss | pred cos matched / shuffled | zero-shot "
          "top-1 % (random) | i->t R@1 / R@10 % (random R@10) | erank img / txt | CLS probe "
          "top-1 % (random) |\n"
          "|---|---|---|---|---|---|---|---|---|")


def build_data(photos: bool, work: Path) -> tuple[Path, Path, Path]:
    """(train, held-out, probe fit) manifests: the synthetic world's train / eval-test /
    eval-train, or the photo set's train / val / train."""
    data = work / ("photos" if photos else "synth")
    if photos:
        if not (data / "train" / "manifest.json").exists():
            from levl_data.photoset import make_photo_set

            make_photo_set(data, n_train=5000, n_val=600, image_size=112)
        return (data / "train" / "manifest.json", data / "val" / "manifest.json",
                data / "train" / "manifest.json")
    if not (data / "train" / "manifest.json").exists():
        subprocess.run([str(BIN / "levl-data"), "synth", "--out", str(data), "--size", "tiny"],
                       check=True, capture_output=True)
    return (data / "train" / "manifest.json", data / "eval-test" / "manifest.json",
            data / "eval-train" / "manifest.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/small-scale"))
    parser.add_argument("--photos", action="store_true", help="the real photo set, not synthetic")
    parser.add_argument("--grid", choices=sorted(GRIDS), help="run every variant of a grid")
    parser.add_argument("--only", nargs="+", default=None, help="variants of --grid to run")
    parser.add_argument("--recipe", help="one recipe instead of a grid")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra --set")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--append", type=Path, help="append the rows to this markdown file")
    args = parser.parse_args(argv)
    if not args.grid and not args.recipe:
        parser.error("give --grid or --recipe")
    manifest, val, fit = build_data(args.photos, args.work)
    variants = ({f"{args.recipe} {' '.join(args.sets)}".strip(): (args.recipe, [])}
                if args.recipe else GRIDS[args.grid])
    print(HEADER, flush=True)
    rows = []
    for name, (recipe, sets) in variants.items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            out = args.work / "runs" / f"{name.replace(' ', '_')}-seed{seed}"
            seconds = train(recipe, [f"seed={seed}", *sets, *args.sets], manifest, out)
            trained, random = measure_run(out, val, fit)
            rows.append(row(name, seed, seconds, trained, random, final_record(out)))
            print(rows[-1], flush=True)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + HEADER + "\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
