"""Frozen encoders under evaluation: a checkpoint, or the random-init baseline of its config.

A `FrozenEncoder` memoises its features per split and transform, so protocols that share a split
under one transform (on the synthetic world zero-shot, the linear probe, the background original
and retrieval all read eval-test under the checkpoint's own preprocessing) pay for one forward
pass over it, not one each. The probes ask for `levl_eval.geometry.PAPER_PROBE` on real
datasets, so there the probe and zero-shot read val under their own transforms (one pass each,
or one when the checkpoint's preprocessing already is the paper's).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from levl_eval.data.batches import frame_target_transform, target_transform
from levl_eval.data.splits import EvalSplit
from levl_eval.errors import EvalError
from levl_eval.features.cache import FeatureCache, entry_key, weights_identity
from levl_eval.features.extract import (
    encode_class_texts,
    encode_texts,
    extract_patch_features,
    extract_split_features,
    split_has_masks,
)
from levl_eval.features.spill import SpillDir
from levl_eval.features.types import ClassTextFeatures, PatchFeatures, SplitFeatures, TextFeatures
from levl_eval.geometry import ImageGeometry, image_transform, is_full_frame
from levl_model.checkpoint import load_checkpoint
from levl_model.config import ModelConfig, ObjectiveConfig, uses_predictors
from levl_model.model import LevlModel, build_model
from levl_model.preprocess import Preprocess
from levl_model.tokenizer import CaptionTokenizer, load_tokenizer

T = TypeVar("T")


@dataclass
class FrozenEncoder:
    """A model in eval mode plus the preprocessing and tokenizer it must be fed with."""

    name: str
    model: torch.nn.Module
    preprocess: Preprocess
    tokenizer: CaptionTokenizer
    device: str = "cpu"
    batch_size: int = 256
    num_workers: int = 0
    info: dict = field(default_factory=dict)
    feature_cache: FeatureCache | None = None  # features on disk across runs (levl_eval.features.cache)
    _weights: dict | None = field(default=None, repr=False)
    _images: dict[tuple[str, Preprocess, bool], SplitFeatures] = field(default_factory=dict, repr=False)
    _texts: dict[tuple, ClassTextFeatures] = field(default_factory=dict, repr=False)
    _patches: dict[tuple[str, Preprocess, bool, bool], PatchFeatures] = field(default_factory=dict, repr=False)
    _captions: dict[tuple, TextFeatures] = field(default_factory=dict, repr=False)

    def preprocess_for(self, geometry: ImageGeometry | None) -> Preprocess:
        """The transform images go through under `geometry` (None: the checkpoint's own)."""
        return self.preprocess if geometry is None else geometry.applied_to(self.preprocess)

    def image_features(self, split: EvalSplit, geometry: ImageGeometry | None = None) -> SplitFeatures:
        preprocess, full_frame = self.preprocess_for(geometry), is_full_frame(geometry)
        key = (split.name, preprocess, full_frame)  # one pass per split and transform, whatever asks
        if key not in self._images:
            self._images[key] = self.cached("image", split, preprocess, SplitFeatures, lambda spill: extract_split_features(
                self.model, split, image_transform(preprocess, full_frame), spill=spill,
                batch_size=self.batch_size, device=self.device, num_workers=self.num_workers,
                desc=f"{self.name} {split.name}",
            ), full_frame=full_frame)
        return self._images[key]

    def patch_features(
        self, split: EvalSplit, geometry: ImageGeometry | None = None, *, frame_maps: bool = False
    ) -> PatchFeatures:
        preprocess, full_frame = self.preprocess_for(geometry), is_full_frame(geometry)
        key = (split.name, preprocess, full_frame, frame_maps)
        if key not in self._patches:
            masks = self.maps_reader(split, preprocess, full_frame, frame_maps)
            kind = "patches" if masks is None else "patches+frame-targets" if frame_maps else "patches+targets"
            self._patches[key] = self.cached(kind, split, preprocess, PatchFeatures, lambda spill: extract_patch_features(
                self.model, split, image_transform(preprocess, full_frame), masks, spill=spill,
                batch_size=self.batch_size, device=self.device, num_workers=self.num_workers,
                desc=f"{self.name} {split.name} patches", frame_maps=frame_maps,
            ), full_frame=full_frame)
        return self._patches[key]

    @staticmethod
    def maps_reader(split: EvalSplit, preprocess: Preprocess, full_frame: bool,
                    frame_maps: bool) -> Callable | None:
        """How the split's per-pixel maps are read: untouched (scored frames), through the
        encoder input's geometry (training targets), or not at all (a split without any)."""
        if not split_has_masks(split):
            return None
        return frame_target_transform(split) if frame_maps else target_transform(split, preprocess, full_frame)

    def cached(self, kind: str, split: EvalSplit, preprocess: Preprocess, layout: type[T],
               extract: Callable[[SpillDir], T], full_frame: bool = False) -> T:
        """`extract(spill)`, or its result from the on-disk feature cache when one is set; the
        key holds the transform the features were extracted under (`preprocess`, and a
        full-frame resize when there was one: other entries keep their keys). Without a cache,
        large arrays spill to a temporary directory (`levl_eval.features.spill`)."""
        if self.feature_cache is None:
            spill = SpillDir.temporary()
            try:
                return extract(spill)
            finally:
                spill.release()
        if self._weights is None:  # hashing the weights costs a read of the file: once
            self._weights = {
                "weights": weights_identity(self.model, self.info.get("path")),
                "model_config": self.model.config.to_dict(),
            }
        identity = {**self._weights, "preprocess": preprocess.to_dict(),
                    **({"full_frame": True} if full_frame else {})}
        key = entry_key(kind, identity, split, layout)
        return self.feature_cache.get_or_extract(key, layout, extract)

    def text_features(self, texts: tuple[str, ...]) -> TextFeatures:
        key = tuple(texts)
        if key not in self._captions:
            self._captions[key] = encode_texts(
                self.model, self.tokenizer, key, batch_size=self.batch_size, device=self.device)
        return self._captions[key]

    def class_text_features(
        self, classes: tuple[str, ...], prompts: tuple[str, ...]
    ) -> ClassTextFeatures:
        key = (tuple(classes), tuple(prompts))
        if key not in self._texts:
            self._texts[key] = encode_class_texts(
                self.model, self.tokenizer, key[0], key[1],
                batch_size=self.batch_size, device=self.device,
            )
        return self._texts[key]


@dataclass(frozen=True)
class BaselineSpec:
    """What a random baseline must share with its checkpoint: architecture, pixels, tokens."""

    model_config: ModelConfig
    preprocess: Preprocess
    tokenizer: CaptionTokenizer

    def key(self) -> str:
        """Checkpoints with equal keys share one baseline."""
        return json.dumps([self.model_config.to_dict(), self.preprocess.to_dict(),
                           self.tokenizer.spec()], sort_keys=True)


def checkpoint_name(ckpt_dir: Path) -> str:
    """`run/step_0000100` for a checkpoint inside a run dir, else the directory's name."""
    if ckpt_dir.parent.name == "checkpoints":
        return f"{ckpt_dir.parent.parent.name}/{ckpt_dir.name}"
    return ckpt_dir.name


def recipe_name(recipe: object) -> str | None:
    """levl-train records its resolved config (name under `recipe`); others may use `name`."""
    if not isinstance(recipe, dict):
        return None
    name = recipe.get("recipe", recipe.get("name"))
    return name if isinstance(name, str) else None


def tokenizer_for(spec: dict, max_length: int, where: Path) -> CaptionTokenizer:
    """The checkpoint's tokenizer, refused when its files differ from the ones training used."""
    tokenizer = load_tokenizer(spec.get("source", "offline"), spec.get("max_length", max_length))
    recorded, found = spec.get("sha256"), tokenizer.spec()["sha256"]
    if recorded is not None and recorded != found:
        raise EvalError(
            f"checkpoint {where}: tokenizer {spec.get('source')!r} here has files with other "
            "sha256 than at training time; install the tokenizer the checkpoint was trained with"
        )
    return tokenizer


def load_frozen_checkpoint(
    path: str | Path, *, device: str, batch_size: int, num_workers: int = 0
) -> tuple[FrozenEncoder, BaselineSpec]:
    """Load a checkpoint dir (or a run dir's latest) as a FrozenEncoder, with its baseline spec."""
    loaded = load_checkpoint(path, device=device)
    model, model_config = without_untrained_predictors(loaded.model, loaded.model_config,
                                                       loaded.objective_config)
    ckpt_dir, metadata, preprocess = Path(loaded.path), loaded.metadata, loaded.preprocess
    tokenizer = tokenizer_for(loaded.tokenizer_spec, loaded.model_config.text.max_length, ckpt_dir)
    info = {
        "kind": "checkpoint",
        "random_init": False,
        "path": str(ckpt_dir),
        "step": metadata.get("step"),
        "samples_seen": metadata.get("samples_seen"),
        "recipe": recipe_name(metadata.get("recipe")),
        "objective": loaded.objective_config.name,
        "code_version": metadata.get("code_version"),
        "train_manifest_fingerprint": metadata.get("manifest_fingerprint"),
        "preprocess": preprocess.to_dict(),  # its own; the probes' geometry replaces the resize
    }
    encoder = FrozenEncoder(
        name=checkpoint_name(ckpt_dir), model=model.to(device).eval(),
        preprocess=preprocess, tokenizer=tokenizer, device=device, batch_size=batch_size,
        num_workers=num_workers, info=info,
    )
    return encoder, BaselineSpec(model_config, preprocess, tokenizer)


def without_untrained_predictors(model: LevlModel, model_config: ModelConfig,
                                 objective_config: ObjectiveConfig) -> tuple[LevlModel, ModelConfig]:
    """A contrastive checkpoint written before such runs stopped building predictors holds two
    MLPs at their random init: evaluate it (and its random baseline) without them, or their
    noise would be averaged into the zero-shot and retrieval headlines."""
    if not model.has_predictors or uses_predictors(objective_config):
        return model, model_config
    model_config = dataclasses.replace(
        model_config, heads=dataclasses.replace(model_config.heads, predictors=False))
    model.vision_pred = model.text_pred = None
    model.config = model_config
    return model, model_config


def random_encoder(
    spec: BaselineSpec, *, seed: int, name: str, device: str, batch_size: int, num_workers: int = 0
) -> FrozenEncoder:
    """A randomly initialised model of the same config, fed exactly like its checkpoint."""
    model = build_model(spec.model_config, seed=seed).to(device).eval()
    return FrozenEncoder(
        name=name, model=model, preprocess=spec.preprocess, tokenizer=spec.tokenizer,
        device=device, batch_size=batch_size, num_workers=num_workers,
        info={"kind": "random", "random_init": True, "seed": seed, "path": None, "step": 0,
              "samples_seen": 0, "recipe": None, "preprocess": spec.preprocess.to_dict()},
    )
