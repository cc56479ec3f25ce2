"""Test helpers shipped with the package (for levl_eval's tests and anyone else's).

`StaticFeatures` runs protocols on hand-made tensors; `write_eval_world` and
`save_micro_checkpoint` make a tiny labelled eval world and a micro checkpoint in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from levl_data.writer import ShardSetWriter
from levl_eval.featureset import ClassTextFeatures, EvalData, EvalSplit, SplitFeatures
from levl_model.checkpoint import build_metadata, save_checkpoint
from levl_model.config import ObjectiveConfig, model_config
from levl_model.model import build_model
from levl_model.objectives import build_objective
from levl_model.preprocess import Preprocess
from levl_model.tokenizer import load_tokenizer


@dataclass
class StaticFeatures:
    """A FeatureSource whose features are given up front (keyed by split name)."""

    images: dict[str, SplitFeatures]
    text: ClassTextFeatures
    name: str = "static"
    calls: list[str] = field(default_factory=list)

    def image_features(self, split: EvalSplit) -> SplitFeatures:
        self.calls.append(split.name)
        return self.images[split.name]

    def class_text_features(
        self, classes: tuple[str, ...], prompts: tuple[str, ...]
    ) -> ClassTextFeatures:
        return self.text


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


def save_micro_checkpoint(ckpt_dir: Path, *, image_size: int = 32, seed: int = 0, step: int = 7) -> Path:
    """A tiny random-weight checkpoint written through levl_model's real save path."""
    cfg = model_config("micro", image_size=image_size, embed_dim=16, proj_hidden=32, pred_hidden=32)
    objective_cfg = ObjectiveConfig(num_slices=16)
    metadata = build_metadata(
        model_config=cfg, objective_config=objective_cfg,
        tokenizer_spec=load_tokenizer(max_length=cfg.text.max_length).spec(),
        preprocess=Preprocess(size=image_size), step=step, samples_seen=step * 8,
        manifest_fingerprint=None, recipe={"recipe": "eval_test_micro"}, code_version="test",
    )
    return save_checkpoint(ckpt_dir, model=build_model(cfg, seed=seed),
                           objective=build_objective(objective_cfg), metadata=metadata)
