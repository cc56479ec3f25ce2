"""Test helpers shipped with the package (for levl_eval's tests and anyone else's).

`StaticFeatures` runs protocols on hand-made tensors; `write_eval_world` (flat colours),
`write_synth_eval_world` (the real generator) and `save_micro_checkpoint` make tiny eval worlds
and a micro checkpoint in seconds; `train_micro_checkpoint` trains one that aligns images with
captions on the flat-colour world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from levl_data.synth.sample import make_sample
from levl_data.synth.world import world_labels
from levl_data.writer import ShardSetWriter
from levl_eval.data.batches import split_batches
from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.data.world import load_eval_data
from levl_eval.features.types import ClassTextFeatures, PatchFeatures, SplitFeatures, TextFeatures
from levl_eval.geometry import ImageGeometry
from levl_model.checkpoint import build_metadata, save_checkpoint
from levl_model.config import ObjectiveConfig, model_config
from levl_model.model import build_model
from levl_model.objectives import build_objective
from levl_model.preprocess import Preprocess, eval_transform
from levl_model.tokenizer import load_tokenizer


@dataclass
class StaticFeatures:
    """A FeatureSource whose features are given up front (keyed by split name).

    `captions` maps a text to its (z_t, pred_t) pair of [E] tensors, for retrieval (pred_t
    None for an encoder without predictors). `text` holds [C, P, E] class-text features; zero-shot
    asks for several prompt sets (levl_eval.datasets.prompts), so template p of any set gets
    `text[:, p % P]` (a set of P templates gets `text` itself); `text_requests` records each
    (class names, templates) asked for; `geometries` each (split name, geometry) images or
    patches were asked under (None: the checkpoint's own).
    """

    images: dict[str, SplitFeatures] = field(default_factory=dict)
    text: ClassTextFeatures | None = None
    patches: dict[str, PatchFeatures] = field(default_factory=dict)
    captions: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)
    name: str = "static"
    calls: list[str] = field(default_factory=list)
    text_requests: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    geometries: list[tuple[str, ImageGeometry | None]] = field(default_factory=list)

    def image_features(self, split: EvalSplit, geometry: ImageGeometry | None = None) -> SplitFeatures:
        self.calls.append(split.name)
        self.geometries.append((split.name, geometry))
        return self.images[split.name]

    def patch_features(
        self, split: EvalSplit, geometry: ImageGeometry | None = None, *, frame_maps: bool = False
    ) -> PatchFeatures:
        """The given patches whatever the request; a request for frame maps is recorded in
        `calls` as `frames:<split>` (the given maps are the frames: see `scored_maps`)."""
        self.calls.append(f"{'frames' if frame_maps else 'patches'}:{split.name}")
        self.geometries.append((f"patches:{split.name}", geometry))
        return self.patches[split.name]

    def text_features(self, texts: tuple[str, ...]) -> TextFeatures:
        pairs = [self.captions[text] for text in texts]
        preds = [p for _, p in pairs]
        return TextFeatures(torch.stack([z for z, _ in pairs]),
                            None if None in preds else torch.stack(preds))

    def class_text_features(
        self, classes: tuple[str, ...], prompts: tuple[str, ...]
    ) -> ClassTextFeatures:
        self.text_requests.append((tuple(classes), tuple(prompts)))
        index_P = torch.arange(len(prompts)) % self.text.z_CPE.shape[1]
        pred_CPE = self.text.pred_CPE
        return ClassTextFeatures(self.text.z_CPE[:, index_P],
                                 None if pred_CPE is None else pred_CPE[:, index_P])


def static_data(num_classes: int, prompts: tuple[str, ...] = ("a photo of a {}.",)) -> EvalData:
    """An EvalData with splits named `eval-train` / `eval-test` and classes `c0..`."""
    return EvalData(
        train=EvalSplit("eval-train"),
        test=EvalSplit("eval-test"),
        classes=tuple(f"c{i}" for i in range(num_classes)),
        prompts=prompts,
    )


def write_eval_world(
    out_dir: Path, *, num_classes: int = 4, per_class: int = 6, image_size: int = 32, seed: int = 0
) -> Path:
    """A tiny labelled eval world (eval-train/ + eval-test/ manifests with labels) for tests.

    Class i is a flat image of colour i plus mild noise, so a working pipeline separates the
    classes easily while the test stays independent of the full synthetic-world generator.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_classes, 3))
    classes = [f"shape{i}" for i in range(num_classes)]
    for split in ("eval-train", "eval-test"):
        with ShardSetWriter(out_dir / split, samples_per_shard=per_class * 2) as writer:
            for index in range(num_classes * per_class):
                label = index % num_classes
                noise = rng.integers(-20, 21, size=(image_size, image_size, 3))
                pixels = np.clip(palette[label] + noise, 0, 255).astype(np.uint8)
                writer.write({"__key__": f"{split}-{index:05d}", "jpg": Image.fromarray(pixels),
                              "txt": f"a {classes[label]}", "json": {"label": label}})
            writer.finish(
                name=f"test-world-{split}", split=split,
                source={"kind": "synthetic", "metadata": [], "subset": {"rule": "all", "sha256": None}},
                image={"policy": "fixed", "size": image_size, "encoding": "jpg"},
                labels={"classes": classes, "prompts": ["a photo of a {}.", "a {}."]},
            )
    return out_dir


def write_synth_eval_world(out_dir: Path, *, per_split: int = 32, image_size: int = 32, seed: int = 0) -> Path:
    """eval-train/ + eval-test/ drawn by the real synthetic-world generator (masks, background
    variants, captions, the world's labels), at a test-sized count and resolution."""
    for split in ("eval-train", "eval-test"):
        with ShardSetWriter(out_dir / split, samples_per_shard=per_split) as writer:
            for index in range(per_split):
                writer.write(make_sample(seed, split, index, image_size, extras=True))
            writer.finish(
                name=f"test-synth-{split}", split=split,
                source={"kind": "synthetic", "metadata": [], "subset": {"rule": "all", "sha256": None}},
                image={"policy": "synthetic", "size": image_size, "encoding": "jpeg"},
                labels=world_labels(),
            )
    return out_dir


def write_image(path: Path, size: tuple[int, int] = (16, 16), value: int = 100) -> Path:
    """A flat RGB image file (any suffix PIL knows), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def write_ade20k_layout(root: Path, *, per_split: int = 2, mask_size: tuple[int, int] = (16, 16)) -> Path:
    """root/ADEChallengeData2016 with per_split images per split; sample i's annotation is 0
    (void) on the left half and 1 + i on the right half."""
    base = root / "ADEChallengeData2016"
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(per_split):
            write_image(base / "images" / split / f"{prefix}_{i:08d}.jpg")
            values = np.zeros(mask_size[::-1], dtype=np.uint8)
            values[:, mask_size[0] // 2:] = 1 + i
            mask = base / "annotations" / split / f"{prefix}_{i:08d}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values, mode="L").save(mask)
    return root


def write_in9_layout(root: Path, *, per_class: int = 4, with_train: bool = False) -> Path:
    """root/bg_challenge with classes 00_dog, 01_bird; each variant has its own flat colour."""
    base = root / "bg_challenge"
    for variant, value in (("original", 50), ("mixed_same", 120), ("mixed_rand", 200)):
        for label, name in enumerate(("00_dog", "01_bird")):
            for i in range(per_class):
                write_image(base / variant / "val" / name / f"n{label}_{i}.JPEG", value=value + 20 * label)
    if with_train:
        for label, name in enumerate(("00_dog", "01_bird")):
            for i in range(3):
                write_image(base / "original" / "train" / name / f"t_{i}.JPEG", value=50 + 20 * label)
    return root


def karpathy_coco_document(root: Path, splits: tuple[str, ...] = ("test", "train", "test")) -> dict:
    """dataset_coco.json's content for images root/coco/val2014/COCO_<i>.jpg (written here)."""
    images = []
    for i, split in enumerate(splits):
        write_image(root / "coco" / "val2014" / f"COCO_{i}.jpg", value=30 * i)
        images.append({"filepath": "val2014", "filename": f"COCO_{i}.jpg", "split": split,
                       "sentences": [{"raw": f"image {i} caption {j}"} for j in range(2)]})
    return {"images": images}


def write_karpathy_json(root: Path, document: object, dirname: str = "coco",
                        name: str = "dataset_coco.json") -> Path:
    (root / dirname).mkdir(parents=True, exist_ok=True)
    (root / dirname / name).write_text(json.dumps(document))
    return root


def micro_config(image_size: int = 32):
    return model_config("micro", image_size=image_size, embed_dim=16, proj_hidden=32, pred_hidden=32)


def save_micro_checkpoint(ckpt_dir: Path, *, image_size: int = 32, seed: int = 0, step: int = 7,
                          model: torch.nn.Module | None = None,
                          objective_cfg: ObjectiveConfig | None = None,
                          preprocess: Preprocess | None = None) -> Path:
    """A tiny checkpoint written through levl_model's real save path (random weights unless a
    micro `model` is given; LeVLJEPA unless `objective_cfg` says otherwise; eval preprocessing
    `Preprocess(size=image_size)` unless `preprocess` is given)."""
    cfg = micro_config(image_size)
    objective_cfg = objective_cfg or ObjectiveConfig(num_slices=16)
    metadata = build_metadata(
        model_config=cfg, objective_config=objective_cfg,
        tokenizer_spec=load_tokenizer(max_length=cfg.text.max_length).spec(),
        preprocess=preprocess or Preprocess(size=image_size), step=step, samples_seen=step * 8,
        manifest_fingerprint=None, recipe={"recipe": "eval_test_micro"}, code_version="test",
    )
    return save_checkpoint(ckpt_dir, model=model or build_model(cfg, seed=seed),
                           objective=build_objective(objective_cfg), metadata=metadata)


def train_micro_checkpoint(ckpt_dir: Path, world: Path, *, steps: int = 100, lr: float = 1e-3,
                           seed: int = 0) -> Path:
    """A micro checkpoint trained with LeVLJEPA, full batch, on `write_eval_world`'s eval-train
    images, each captioned with its class name in the world's first zero-shot prompt.

    The protocols must be able to tell a trained encoder from a random one; the real synthetic
    world needs thousands of steps for that, this colour-coded one a few dozen (~3 s on one core).
    Prompt-worded captions rather than the world's "a shape2": a text encoder that has seen four
    strings does not transfer to "a photo of a shape2." within so few steps (zero-shot then
    swings between 0 and 1 with the seed)."""
    cfg, data = micro_config(), load_eval_data(world)
    tokenizer = load_tokenizer(max_length=cfg.text.max_length)
    batch = next(split_batches(data.train, eval_transform(Preprocess(size=32)), None, batch_size=1024))
    input_ids, attention_mask = tokenizer([data.prompts[0].format(data.classes[label])
                                           for label in batch["labels"].tolist()])
    model = build_model(cfg, seed=seed).train()
    objective = build_objective(ObjectiveConfig(num_slices=64, seed=seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    with torch.enable_grad():
        for step in range(steps):
            loss = objective(model(batch["image"], input_ids, attention_mask), step)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return save_micro_checkpoint(ckpt_dir, step=steps, model=model.eval())
