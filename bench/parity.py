"""levl-train against open_clip's own trainer on the same data, towers, batch, steps and optimiser.

Both trainers run as users run them: `levl-train run clip_parity` (InfoNCE, or any recipe given
with --recipe) and `open_clip_train.main` (CLIP loss) on towers of the same width, depth, heads,
patch and embedding size, the same images (open_clip reads them from a CSV export of the train
shards), batch, steps (whole epochs), AdamW lr / betas / eps / weight decay, warmup and cosine.
Each trainer runs once per --seeds; the table shows every loss curve, the final loss (mean of the
last 4 logged points), and the same held-out measurements for both: image->text recall and the
effective rank of the embeddings on the validation split.

    .venv/bin/python bench/parity.py                       # real photo set (levl-data photos)
    .venv/bin/python bench/parity.py --synthetic           # the synthetic world (levl-data synth)
    .venv/bin/python bench/parity.py --seeds 0 1 2 --append bench/RESULTS.md

docs/parity.md lists every difference between the two trainers and what each one costs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import torch
import torch.nn.functional as F

BIN = Path(sys.executable).parent
OPEN_CLIP_MAIN = ("import sys, open_clip; open_clip.add_model_config(sys.argv[1]); "
                  "from open_clip_train.main import main; main(sys.argv[2:])")


@dataclass(frozen=True)
class Setup:
    """What both trainers share. width/depth/heads describe both towers (as levl's sizes do)."""

    width: int = 192
    depth: int = 6
    heads: int = 3
    image_size: int = 112
    patch: int = 16
    embed_dim: int = 256
    batch: int = 64
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 25
    beta2: float = 0.999
    eps: float = 1e-8
    log_every: int = 5
    recipe: str = "clip_parity"
    levl_sets: tuple[str, ...] = ()
    objective: str = "infonce"  # or siglip: open_clip_train --siglip, levl objective.name=siglip

    def steps(self, n_train: int) -> int:
        """open_clip's CSV loader drops the last partial batch of every epoch."""
        return (n_train // self.batch) * self.epochs


@dataclass
class Result:
    trainer: str
    seed: int
    curve: list[tuple[int, float]]  # (step, loss) at each logged step
    held_out: dict[str, float] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return mean(loss for _, loss in self.curve[-4:])

    @property
    def late_loss(self) -> float:
        """Mean over the second half of the run: far less noisy than the last few points."""
        half = self.curve[-1][0] / 2
        return mean(loss for step, loss in self.curve if step > half)


TRAINERS = ("open_clip", "levl")

# The regression guard's size (tests/train/test_parity.py): seconds per trainer on 2 cores.
TINY = Setup(width=64, depth=2, heads=2, image_size=64, embed_dim=64, batch=32, epochs=2,
             warmup=5, log_every=2)


def export_csv(manifest: Path, out_dir: Path) -> tuple[Path, int]:
    """The train shards as JPEG files + a tab-separated CSV: open_clip's `--dataset-type csv`."""
    from levl_data.manifest import read_manifest

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for shard in read_manifest(manifest).shard_paths():
        with tarfile.open(shard) as tar:
            samples: dict[str, dict[str, bytes]] = {}
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
        for key, sample in samples.items():
            path = out_dir / f"{key}.jpg"
            path.write_bytes(sample["jpg"])
            rows.append((str(path), sample["txt"].decode()))
    table = out_dir / "train.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return table, len(rows)


# SigLIP's t' = log 10 and b = -10 (METHOD.md; open_clip's SigLIP configs set the bias only)
SIGLIP_INIT = {"init_logit_scale": math.log(10.0), "init_logit_bias": -10.0}


def open_clip_config(setup: Setup, config_dir: Path) -> str:
    """A model config of levl's tower shapes, registered by name in open_clip."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "levl-parity.json").write_text(json.dumps({
        "embed_dim": setup.embed_dim,
        "vision_cfg": {"image_size": setup.image_size, "layers": setup.depth,
                       "width": setup.width, "head_width": setup.width // setup.heads,
                       "patch_size": setup.patch},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": setup.width,
                     "heads": setup.heads, "layers": setup.depth},
        **(SIGLIP_INIT if setup.objective == "siglip" else {})}))
    return "levl-parity"


def run_open_clip(setup: Setup, table: Path, work: Path, seed: int) -> Path:
    config_dir = work / "open_clip_config"
    model = open_clip_config(setup, config_dir)
    name = f"seed{seed}"
    shutil.rmtree(work / "open_clip" / name, ignore_errors=True)  # bench's own earlier run
    args = ["--train-data", str(table), "--dataset-type", "csv", "--csv-separator", "\t",
            "--csv-img-key", "filepath", "--csv-caption-key", "title",
            "--batch-size", str(setup.batch), "--epochs", str(setup.epochs),
            "--lr", str(setup.lr), "--wd", str(setup.weight_decay), "--warmup", str(setup.warmup),
            "--lr-scheduler", "cosine", "--beta1", "0.9", "--beta2", str(setup.beta2),
            "--eps", str(setup.eps), "--precision", "fp32", "--workers", "1",
            "--seed", str(seed), "--model", model, "--logs", str(work / "open_clip"),
            "--name", name, "--save-frequency", str(setup.epochs),
            "--log-every-n-steps", str(setup.log_every), "--device", "cpu", "--report-to", "",
            *(["--siglip"] if setup.objective == "siglip" else [])]
    _check_run([sys.executable, "-c", OPEN_CLIP_MAIN, str(config_dir), *args], "open_clip_train")
    return work / "open_clip" / name


def run_levl(setup: Setup, manifest: Path, work: Path, seed: int, n_train: int) -> Path:
    out = work / "levl" / f"seed{seed}"
    shutil.rmtree(out, ignore_errors=True)  # bench's own earlier run
    sets = [f"seed={seed}", f"steps={setup.steps(n_train)}", f"data.batch_size={setup.batch}",
            f"optim.lr={setup.lr}", f"optim.weight_decay={setup.weight_decay}",
            f"optim.warmup_steps={setup.warmup}", f"optim.beta2={setup.beta2}",
            f"log_every={setup.log_every}", f"ckpt_every={setup.steps(n_train)}",
            # heads before width: each --set is checked as it lands (192 splits over 2 heads)
            f"model.vision.heads={setup.heads}", f"model.vision.width={setup.width}",
            f"model.vision.depth={setup.depth}", f"model.vision.image_size={setup.image_size}",
            f"model.vision.patch_size={setup.patch}", f"model.text.heads={setup.heads}",
            f"model.text.width={setup.width}", f"model.text.depth={setup.depth}",
            f"model.heads.embed_dim={setup.embed_dim}", f"preprocess.size={setup.image_size}",
            "device=cpu", f"objective.name={setup.objective}", *setup.levl_sets]
    _check_run([str(BIN / "levl-train"), "run", setup.recipe, "--data", str(manifest), "--out",
                str(out), *[arg for item in sets for arg in ("--set", item)]], "levl-train")
    return out


def _check_run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {what} failed:\n{result.stderr[-3000:]}")


def levl_curve(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [(record["step"], record["loss"]) for record in records]


def open_clip_curve(run: Path, steps_per_epoch: int) -> list[tuple[int, float]]:
    """(step, loss) from out.log's `Train Epoch: E [n/N ...] ... Contrastive_loss: x` lines."""
    pattern = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/\d+.*?Contrastive_loss: ([\d.]+)")
    curve = []
    for epoch, seen, loss in pattern.findall((run / "out.log").read_text()):
        batch = math.ceil(int(seen) / _batch_of(run))
        curve.append((int(epoch) * steps_per_epoch + batch, float(loss)))
    return curve


def _batch_of(run: Path) -> int:
    match = re.search(r"^batch_size: (\d+)$", (run / "params.txt").read_text(), re.MULTILINE)
    return int(match.group(1))


@torch.no_grad()
def held_out(encode_images, encode_texts, preprocess, val_manifest: Path) -> dict[str, float]:
    """image->text R@1/R@10 and effective rank of both embeddings on the validation split,
    computed the same way for both trainers."""
    from levl_data.loader import build_loader
    from levl_train.metrics import effective_rank

    loader = build_loader(val_manifest, batch_size=100, image_transform=preprocess,
                          shuffle_buffer=0, drop_last=False)
    images, texts = [], []
    for batch in loader:
        images.append(encode_images(batch["image"]))
        texts.append(encode_texts(list(batch["caption"])))
    z_v, z_t = torch.cat(images), torch.cat(texts)
    similarity = F.normalize(z_v, dim=-1) @ F.normalize(z_t, dim=-1).T
    rank = (similarity > similarity.diag()[:, None]).sum(dim=1)
    return {"i2t_r1": float((rank < 1).float().mean()),
            "i2t_r10": float((rank < 10).float().mean()),
            "erank_v": effective_rank(z_v), "erank_t": effective_rank(z_t)}


def levl_held_out(run: Path, val_manifest: Path) -> dict[str, float]:
    from levl_model.checkpoint import load_checkpoint
    from levl_model.preprocess import eval_transform
    from levl_model.tokenizer import load_tokenizer

    loaded = load_checkpoint(run)
    model = loaded.model.eval()
    tokenizer = load_tokenizer("offline", max_length=loaded.model_config.text.max_length)
    return held_out(lambda images: model.encode_image(images).z_BE,
                    lambda captions: model.encode_text(*tokenizer(captions)).z_BE,
                    eval_transform(loaded.preprocess), val_manifest)


def open_clip_held_out(run: Path, setup: Setup, work: Path, val_manifest: Path) -> dict[str, float]:
    import open_clip

    open_clip.add_model_config(str(work / "open_clip_config"))
    model, _, preprocess = open_clip.create_model_and_transforms("levl-parity")
    state = torch.load(run / "checkpoints" / f"epoch_{setup.epochs}.pt", map_location="cpu",
                       weights_only=True)["state_dict"]
    model.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    model.eval()
    tokenizer = open_clip.get_tokenizer("levl-parity")
    return held_out(model.encode_image, lambda captions: model.encode_text(tokenizer(captions)),
                    preprocess, val_manifest)


def compare(setup: Setup, manifest: Path, val_manifest: Path, work: Path,
            seeds: list[int], trainers: tuple[str, ...] = TRAINERS) -> list[Result]:
    """Run each trainer once per seed; returns every run's curve and held-out figures."""
    table, n_train = export_csv(manifest, work / "csv")
    steps_per_epoch = n_train // setup.batch
    results = []
    for seed in seeds:
        if "open_clip" in trainers:
            oc_run = run_open_clip(setup, table, work, seed)
            results.append(Result("open_clip", seed, open_clip_curve(oc_run, steps_per_epoch),
                                  open_clip_held_out(oc_run, setup, work, val_manifest)))
        if "levl" not in trainers:
            continue
        levl_run = run_levl(setup, manifest, work, seed, n_train)
        results.append(Result("levl", seed, levl_curve(levl_run),
                              levl_held_out(levl_run, val_manifest)))
    return results


def report(results: list[Result], setup: Setup) -> str:
    lines = [f"towers {setup.width}x{setup.depth} (heads {setup.heads}) at {setup.image_size} px, "
             f"patch {setup.patch}, E {setup.embed_dim}; batch {setup.batch}, {setup.epochs} "
             f"epochs; AdamW lr {setup.lr} wd {setup.weight_decay} beta2 {setup.beta2} eps "
             f"{setup.eps}, warmup {setup.warmup}, cosine; {setup.objective}; levl recipe "
             f"{setup.recipe} "
             f"{' '.join(setup.levl_sets)}; ln(batch) = {math.log(setup.batch):.2f}", "",
             "| trainer | seed | final loss | 2nd-half loss | val i->t R@1 | R@10 | erank img / txt "
             "| curve |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        curve = " ".join(f"{loss:.2f}" for _, loss in r.curve[:: max(1, len(r.curve) // 10)])
        h = r.held_out
        lines.append(f"| {r.trainer} | {r.seed} | {r.final_loss:.3f} | {r.late_loss:.3f} | "
                     f"{h['i2t_r1']:.3f} | "
                     f"{h['i2t_r10']:.3f} | {h['erank_v']:.1f} / {h['erank_t']:.1f} | {curve} |")
    return "\n".join(lines)


def build_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """The photo set (levl-data photos) or the synthetic world's train / eval-test splits."""
    data = work / "data"
    if args.synthetic:
        if not (data / "train" / "manifest.json").exists():
            _check_run([str(BIN / "levl-data"), "synth", "--out", str(data), "--size", "tiny"],
                       "levl-data synth")
        return data / "train" / "manifest.json", data / "eval-test" / "manifest.json"
    if not (data / "train" / "manifest.json").exists():
        from levl_data.photoset import make_photo_set

        make_photo_set(data, n_train=args.train, n_val=args.val, image_size=args.image_size)
    return data / "train" / "manifest.json", data / "val" / "manifest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/parity"))
    parser.add_argument("--synthetic", action="store_true", help="the synthetic world (tiny)")
    parser.add_argument("--train", type=int, default=5000, help="photo set train samples")
    parser.add_argument("--val", type=int, default=600, help="photo set val samples")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--tiny", action="store_true",
                        help="the test's size: towers 64x2 at 64 px, 640 photos, 2 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipe", default="clip_parity", help="levl's side (any recipe: the "
                        "objective is --objective's)")
    parser.add_argument("--objective", choices=("infonce", "siglip"), default="infonce",
                        help="both trainers' loss (open_clip_train --siglip for siglip)")
    parser.add_argument("--levl-set", action="append", default=[], help="extra levl --set")
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS),
                        help="run only these (e.g. levl, to rerun one side of a seed)")
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    base = TINY if args.tiny else Setup(image_size=args.image_size)
    setup = dataclasses.replace(base, recipe=args.recipe, levl_sets=tuple(args.levl_set),
                                objective=args.objective)
    if args.tiny:
        args.train, args.val, args.image_size = 640, 200, TINY.image_size
    work = args.work.absolute() / ("synthetic" if args.synthetic else "photos") / \
        ("tiny" if args.tiny else "full")
    manifest, val_manifest = build_data(args, work)
    text = report(compare(setup, manifest, val_manifest, work, args.seeds,
                         tuple(args.trainers)), setup)
    print(text)
    if args.append:
        with args.append.open("a") as handle:
            handle.write(f"\n## bench/parity.py {' '.join(argv or sys.argv[1:])}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
