"""Typed, frozen configs for the model and its objective.

They are frozen dataclasses so a run's config cannot drift after it is written into a checkpoint,
and `from_dict` is strict (unknown keys and bad values raise ConfigError naming the key) because
a silently ignored typo in a recipe wastes a training run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, NoReturn, TypeVar

from levl_model.errors import ConfigError

T = TypeVar("T")

# (width, depth, heads); the text tower copies the vision tower (METHOD.md "Sizes").
SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
OBJECTIVES = ("levljepa", "infonce", "siglip")
PRED_LOSSES = ("mse", "cosine")
# Where SIGReg's characteristic function is estimated and which N scales it (METHOD.md):
# local: this rank's rows, N of one rank's step batch (the reference code: the paper's run);
# global: every rank's rows (all-reduced), N of the global batch (effective λ grows with ranks);
# global_cf: every rank's rows, N of one rank's step batch (global's lower variance, local's λ).
SIGREG_SCOPES = ("local", "global", "global_cf")
PROJECTIONS = ("mlp", "linear")
INITS = ("width_scaled", "reference", "open_clip")
REFERENCE_INIT_STD = 0.02  # timm's ViT and GPT-2's initializer_range alike
REFERENCE_WIDTH = 768  # ViT-B/16 and GPT-2: the width that init std was chosen at


def init_std(cfg_init: str, width: int) -> float:
    """The towers' weight init std (see ModelConfig.init)."""
    if cfg_init in ("reference", "open_clip"):  # open_clip's is drawn over it (encoders.py)
        return REFERENCE_INIT_STD
    return REFERENCE_INIT_STD * (REFERENCE_WIDTH / width) ** 0.5


def fail(where: str, key: str, problem: str) -> NoReturn:
    """Raise the one-line ConfigError every config check uses, naming `where.key`."""
    raise ConfigError(f"{where}.{key}: {problem}")


def check_int(where: str, key: str, value: Any, minimum: int = 1) -> None:
    """bool is an int in Python; a `True` width is a bug, so it is rejected explicitly."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(where, key, f"expected an integer >= {minimum}, got {value!r}")


def check_float(where: str, key: str, value: Any, lo: float, hi: float) -> None:
    """Accept ints for float fields (JSON writes 4.0 as 4) but keep the closed range [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        fail(where, key, f"expected a number in [{lo}, {hi}], got {value!r}")


def check_bool(where: str, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(where, key, f"expected true or false, got {value!r}")


def check_choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(where, key, f"unknown value {value!r} (known: {', '.join(choices)})")


def dataclass_from_dict(
    cls: type[T], data: Any, where: str, nested: Mapping[str, Any] | None = None
) -> T:
    """Build `cls` from a mapping, refusing unknown and missing keys before any value check."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        fail(where, str(unknown[0]), f"unknown key (known: {', '.join(names)})")
    required = [f.name for f in fields(cls) if f.default is MISSING]  # type: ignore[arg-type]
    missing = [name for name in required if name not in data]
    if missing:
        fail(where, missing[0], "missing required key")
    kwargs = dict(data)
    for key, sub_cls in (nested or {}).items():
        kwargs[key] = sub_cls.from_dict(kwargs[key])
    return cls(**kwargs)


def _check_tower(where: str, width: int, depth: int, heads: int) -> None:
    check_int(where, "width", width)
    check_int(where, "depth", depth)
    check_int(where, "heads", heads)
    if width % heads:
        fail(where, "heads", f"width {width} is not divisible by heads {heads}")


@dataclass(frozen=True)
class VisionConfig:
    """ViT tower; image_size only sets the stored position grid (inputs may differ)."""

    width: int
    depth: int
    heads: int
    patch_size: int = 16
    image_size: int = 224
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        _check_tower("vision", self.width, self.depth, self.heads)
        check_int("vision", "patch_size", self.patch_size)
        check_int("vision", "image_size", self.image_size, minimum=self.patch_size)
        if self.image_size % self.patch_size:
            fail(
                "vision",
                "image_size",
                f"{self.image_size} is not a multiple of patch_size {self.patch_size}",
            )
        check_float("vision", "mlp_ratio", self.mlp_ratio, 1e-6, 64.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VisionConfig:
        return dataclass_from_dict(cls, data, "vision")


@dataclass(frozen=True)
class TextConfig:
    """GPT-2 tower; max_length bounds the learned position table (content tokens + EOS)."""

    width: int
    depth: int
    heads: int
    vocab_size: int = 50257
    max_length: int = 77

    def __post_init__(self) -> None:
        _check_tower("text", self.width, self.depth, self.heads)
        check_int("text", "vocab_size", self.vocab_size)
        check_int("text", "max_length", self.max_length, minimum=2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextConfig:
        return dataclass_from_dict(cls, data, "text")


@dataclass(frozen=True)
class HeadsConfig:
    """Projection and predictor sizes; embed_dim is E, the space SIGReg and the losses see."""

    embed_dim: int = 256
    proj_hidden: int = 2048
    pred_hidden: int = 2048
    pred_depth: int = 4
    # mlp: Linear→BatchNorm→GELU→Linear (LeVLJEPA's pre-projection); linear: CLIP's bias-free
    # linear map (proj_hidden unused)
    projection: str = "mlp"
    # False: no predictor MLPs, for the objectives that never train them (the contrastive
    # baselines, LeVLJEPA's no-predictor ablation): see uses_predictors
    predictors: bool = True

    def __post_init__(self) -> None:
        for key in ("embed_dim", "proj_hidden", "pred_hidden", "pred_depth"):
            check_int("heads", key, getattr(self, key))
        check_choice("heads", "projection", self.projection, PROJECTIONS)
        check_bool("heads", "predictors", self.predictors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadsConfig:
        return dataclass_from_dict(cls, data, "heads")


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig
    text: TextConfig
    heads: HeadsConfig
    # width_scaled: the towers' N(0, 0.02) init (timm ViT, GPT-2) scaled by sqrt(768 / width),
    # exactly the reference at width 768 and open_clip's per-unit scale on narrow towers (at
    # 0.02 a width-192 pair trains like one at 2-3x the learning rate: docs/parity.md);
    # reference: 0.02 at every width; open_clip: open_clip's own init of its ViT and text
    # transformer, drawn into levl's towers (the contrastive objectives' default on a CLI switch:
    # objective_init, docs/parity.md).
    init: str = "width_scaled"

    def __post_init__(self) -> None:
        check_choice("model", "init", self.init, INITS)
        for key, cls in (("vision", VisionConfig), ("text", TextConfig), ("heads", HeadsConfig)):
            if not isinstance(getattr(self, key), cls):
                fail(
                    "model",
                    key,
                    f"expected a {cls.__name__}, got {type(getattr(self, key)).__name__}",
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "vision": self.vision.to_dict(),
            "text": self.text.to_dict(),
            "heads": self.heads.to_dict(),
            "init": self.init,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        nested = {"vision": VisionConfig, "text": TextConfig, "heads": HeadsConfig}
        return dataclass_from_dict(cls, data, "model", nested)


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which loss and its knobs; the ablation flags are the paper's (METHOD.md "Ablations")."""

    name: str = "levljepa"
    lambda_v: float = 0.02
    lambda_t: float = 0.02
    num_slices: int = 4096
    knots: int = 17
    t_max: float = 3.0
    pred_loss: str = "mse"
    use_predictors: bool = True
    use_sigreg: bool = True
    stop_gradient: bool = True
    seed: int = 0
    sigreg_scope: str = "local"
    # LeVLJEPA+'s multi-view term (with data.views > 1 or data.local_views): every view's z_v,
    # local views too, pulled to the mean of the image's global views, weight lambda_multi
    # (METHOD.md: e.g. 0.2); 0 = off
    lambda_multi: float = 0.0
    # with several views: how many of them (the first) predict the caption; 0 = every view
    caption_views: int = 0

    def __post_init__(self) -> None:
        check_choice("objective", "name", self.name, OBJECTIVES)
        check_float("objective", "lambda_v", self.lambda_v, 0.0, 1.0)
        check_float("objective", "lambda_t", self.lambda_t, 0.0, 1.0)
        if self.lambda_v + self.lambda_t >= 1.0:
            fail(
                "objective",
                "lambda_t",
                f"lambda_v + lambda_t must be < 1 (the prediction weight is 1 - their sum), got {self.lambda_v} + {self.lambda_t}",
            )
        check_int("objective", "num_slices", self.num_slices)
        check_int("objective", "knots", self.knots, minimum=2)
        check_float("objective", "t_max", self.t_max, 1e-6, 100.0)
        check_choice("objective", "pred_loss", self.pred_loss, PRED_LOSSES)
        for key in ("use_predictors", "use_sigreg", "stop_gradient"):
            check_bool("objective", key, getattr(self, key))
        check_int("objective", "seed", self.seed, minimum=0)
        check_choice("objective", "sigreg_scope", self.sigreg_scope, SIGREG_SCOPES)
        check_float("objective", "lambda_multi", self.lambda_multi, 0.0, 10.0)
        check_int("objective", "caption_views", self.caption_views, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectiveConfig:
        return dataclass_from_dict(cls, data, "objective")


def uses_predictors(objective: ObjectiveConfig) -> bool:
    """Whether the objective trains the predictor MLPs: only LeVLJEPA with its predictors on."""
    return objective.name == "levljepa" and objective.use_predictors


def objective_init(objective: ObjectiveConfig) -> str:
    """The towers' default init for an objective (ModelConfig.init): open_clip's for the
    contrastive baselines, whose loss that init is tuned with (with levl's width-scaled init
    InfoNCE trailed open_clip's trainer by 3-6 points of val R@10 in 2 of 3 seeds, with
    open_clip's it matched or beat it in all 3: docs/parity.md); width_scaled, the paper's
    reference init, for LeVLJEPA."""
    return "width_scaled" if objective.name == "levljepa" else "open_clip"


def model_config(
    size: str,
    *,
    image_size: int = 224,
    patch_size: int = 16,
    embed_dim: int = 256,
    proj_hidden: int = 2048,
    pred_hidden: int = 2048,
) -> ModelConfig:
    """A named size with the text tower matching the vision tower, as in the paper."""
    if size not in SIZES:
        raise ConfigError(f"model size {size!r} is unknown (known: {', '.join(SIZES)})")
    width, depth, heads = SIZES[size]
    return ModelConfig(
        vision=VisionConfig(width, depth, heads, patch_size=patch_size, image_size=image_size),
        text=TextConfig(width, depth, heads),
        heads=HeadsConfig(embed_dim=embed_dim, proj_hidden=proj_hidden, pred_hidden=pred_hidden),
    )
