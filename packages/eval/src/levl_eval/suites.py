"""Named evaluation suites: each is a function returning the full `EvalSuite` of one kind of
evaluation, as levl-train's recipes return a `TrainConfig`.

    levl-eval all --ckpt RUN --data DIR --suite quick --set linear.train_per_class_cap=8
    levl-eval suites [--show paper]

`resolve_suite` is the one place that turns a suite name, the command line's shorthand options
(`--probe`, `--vlm`, `--batch-size`, ... each sets one suite field) and `--set key=value`
overrides into the final config; `eval_options` turns that config into the runner's
`EvalOptions`. The whole resolved suite lands in report.json under `suite`, the report's one
record of the configuration (the options derived from it are not recorded beside it).

What the suites leave fixed, because the protocols fix it: the probes' image geometry (the
paper's resize 256 / crop 224 bicubic on real datasets, the checkpoint's own on the synthetic
world; levl_eval.geometry) and the zero-shot prompt sets (every task is scored with the
standard set and the dataset's own side by side; levl_eval.protocols.zeroshot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levl_eval.errors import EvalError
from levl_eval.features.cache import default_cache_dir
from levl_eval.probes import DEFAULT_PROBES
from levl_eval.protocols.linear.protocol import check_probe_names
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS
from levl_eval.protocols.zeroshot.protocol import check_class_names
from levl_eval.runner import EvalOptions, check_protocol_names, resolve_device
from levl_model.overrides import OverrideError, replace_field, set_from_text

DEFAULT_SUITE = "synthetic"


@dataclass(frozen=True)
class LinearSuite:
    """The probes (`linear` protocol)."""

    probes: tuple[str, ...] = DEFAULT_PROBES  # linear, mlp, attentive (or all)
    # on a real dataset's train split: at most this many images per class; None: every image
    train_per_class_cap: int | None = None


@dataclass(frozen=True)
class ZeroshotSuite:
    """Zero-shot classification (every prompt set is always scored side by side)."""

    class_names: str = "curated"  # curated (CLIP's for ImageNet) | dataset


@dataclass(frozen=True)
class VlmSuite:
    """The frozen-VLM protocol's budget (runs only when `vlm` is in `protocols`). None keeps
    VLMSettings' default (the dataset's budget: levl_eval.protocols.vlm.train)."""

    llm: str | None = None  # Hugging Face causal LM name or local dir; None: SmolLM2-135M
    epochs: int | None = None
    max_steps: int | None = None
    max_questions: int | None = None  # train and test questions each
    bridges: str | None = None  # score with the bridges saved here instead of training
    save_bridges: str | None = None  # keep every trained bridge here


@dataclass(frozen=True)
class EvalSuite:
    """Everything an evaluation is run with besides the checkpoints and where the data lies."""

    name: str
    protocols: tuple[str, ...]
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 256  # images per forward pass
    workers: int = 0  # data-loader worker processes
    random_seed: int = 0  # seed of the random-init baseline
    cache: bool = True  # on-disk feature cache (levl_eval.features.cache)
    cache_dir: str | None = None  # None: $LEVL_FEATURE_CACHE, else ~/.cache/levl/features
    linear: LinearSuite = field(default_factory=LinearSuite)
    zeroshot: ZeroshotSuite = field(default_factory=ZeroshotSuite)
    vlm: VlmSuite = field(default_factory=VlmSuite)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def synthetic() -> EvalSuite:
    """The default of `levl-eval all`: every protocol but the frozen VLM, the linear probe, full splits."""
    return EvalSuite(name="synthetic",
                     protocols=tuple(name for name in PROTOCOLS if name not in OPT_IN))


def quick() -> EvalSuite:
    """A cheap smoke check: zero-shot and the linear probe, 16 train images per class, batch 64."""
    return EvalSuite(name="quick", protocols=("zeroshot", "linear"), batch_size=64,
                     linear=LinearSuite(train_per_class_cap=16))


def paper() -> EvalSuite:
    """The paper's battery: every protocol incl. the frozen VLM, the paper's linear probe on
    whole train splits (paper geometry on real data), both prompt sets, curated class names,
    the VLM at its default budget."""
    return EvalSuite(name="paper", protocols=tuple(PROTOCOLS),
                     linear=LinearSuite(probes=DEFAULT_PROBES, train_per_class_cap=None),
                     zeroshot=ZeroshotSuite(class_names="curated"), vlm=VlmSuite())


SUITES: dict[str, Callable[[], EvalSuite]] = {fn.__name__: fn for fn in (synthetic, quick, paper)}


def get_suite(name: str) -> EvalSuite:
    try:
        return SUITES[name]()
    except KeyError:
        raise EvalError(f"--suite {name!r}: unknown suite; choose one of: "
                        f"{', '.join(sorted(SUITES))}") from None


def resolve_suite(name: str = DEFAULT_SUITE, shorthands: Mapping[str, Any] | None = None,
                  overrides: list[str] | None = None, with_vlm: bool = False) -> EvalSuite:
    """The final config: the named suite, then the shorthand options (dotted key -> typed value,
    None = not given; `with_vlm` adds the vlm protocol, as --vlm), then `--set key=value`
    overrides, checked as a whole."""
    suite = get_suite(name)
    try:
        for key, value in (shorthands or {}).items():
            if value is not None:
                suite = replace_field(suite, key, lambda hint, v=value: v, hidden=("name",))
        if with_vlm and "vlm" not in suite.protocols:
            suite = dataclasses.replace(suite, protocols=(*suite.protocols, "vlm"))
        for item in overrides or ():
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise EvalError(f"--set {item!r}: expected key=value, e.g. --set batch_size=64")
            suite = set_from_text(suite, key.strip(), raw.strip(), hidden=("name",))
    except OverrideError as error:
        raise EvalError(str(error)) from None
    return check_suite(suite)


def check_suite(suite: EvalSuite) -> EvalSuite:
    """Refuse values no evaluation could use, in one line, before any model loads; returns the
    suite with its names normalised (`probes=all` spelled out, duplicates dropped)."""
    protocols = check_protocol_names(suite.protocols)
    if not protocols:
        raise EvalError("protocols is empty; name at least one of: " + ", ".join(PROTOCOLS))
    for key in ("batch_size",):
        if getattr(suite, key) < 1:
            raise EvalError(f"{key}={getattr(suite, key)} must be at least 1")
    if suite.workers < 0:
        raise EvalError(f"workers={suite.workers} must be >= 0")
    if suite.linear.train_per_class_cap is not None and suite.linear.train_per_class_cap < 1:
        raise EvalError(f"linear.train_per_class_cap={suite.linear.train_per_class_cap} must be "
                        "at least 1 (or none for every image)")
    for key in ("epochs", "max_steps", "max_questions"):
        value = getattr(suite.vlm, key)
        if value is not None and value < 1:
            raise EvalError(f"vlm.{key}={value} must be at least 1 (or none for the default)")
    if suite.vlm.bridges is not None and suite.vlm.save_bridges is not None:
        raise EvalError("--bridges and --save-bridges contradict each other (saved bridges are "
                        "not trained again); pass one of them")
    if not suite.cache and suite.cache_dir is not None:
        raise EvalError("--cache and --no-cache contradict each other (cache=false with "
                        "cache_dir set); pass one of them")
    check_class_names(suite.zeroshot.class_names)
    linear = dataclasses.replace(suite.linear, probes=check_probe_names(suite.linear.probes))
    return dataclasses.replace(suite, protocols=protocols, linear=linear)


def eval_options(suite: EvalSuite, datasets: Path | None = None) -> EvalOptions:
    """The runner's options for a checked suite (device resolved, cache dir made absolute)."""
    root = None
    if suite.cache:
        root = (Path(suite.cache_dir) if suite.cache_dir else default_cache_dir()).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise EvalError(f"--cache {root}: exists and is not a directory; pass a directory")
    vlm = suite.vlm
    given = {"llm": vlm.llm, "epochs": vlm.epochs, "max_steps": vlm.max_steps,
             "max_train_questions": vlm.max_questions, "max_test_questions": vlm.max_questions,
             "bridges": _absolute(vlm.bridges), "save_bridges": _absolute(vlm.save_bridges)}
    return EvalOptions(
        protocols=suite.protocols, device=resolve_device(suite.device),
        batch_size=suite.batch_size, num_workers=suite.workers, random_seed=suite.random_seed,
        datasets=None if datasets is None else str(datasets),
        vlm={key: value for key, value in given.items() if value is not None},
        probes=suite.linear.probes, cache_dir=None if root is None else str(root),
        class_names=suite.zeroshot.class_names,
        train_per_class_cap=suite.linear.train_per_class_cap,
    )


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())
