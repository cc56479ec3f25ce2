"""levl model package: encoders, heads, SIGReg, objectives, tokenizer, checkpoints
(levl.checkpoint/v1). Imports no other levl package. SIGReg is `levl_model.sigreg.sigreg`.

The public names below are imported lazily (PEP 562), so that `import levl_model.errors` — all a
CLI needs to report bad input — does not pay for importing timm and transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "levl_model.checkpoint": ["CHECKPOINT_SCHEMA", "LoadedCheckpoint", "build_metadata",
                              "load_checkpoint", "read_metadata", "resolve_checkpoint",
                              "save_checkpoint"],
    "levl_model.config": ["SIZES", "HeadsConfig", "ModelConfig", "ObjectiveConfig", "TextConfig",
                          "VisionConfig", "model_config", "uses_predictors"],
    "levl_model.errors": ["CheckpointError", "ConfigError", "ModelError"],
    "levl_model.model": ["ImageFeatures", "LevlModel", "TextFeatures", "build_model"],
    "levl_model.objectives": ["InfoNCE", "LeVLJEPA", "Objective", "SigLIP", "build_objective"],
    "levl_model.preprocess": ["CLIP_MEAN", "CLIP_STD", "Preprocess", "eval_transform",
                              "train_transform"],
    "levl_model.tokenizer": ["CaptionTokenizer", "load_tokenizer"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'levl_model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
