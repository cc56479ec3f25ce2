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
from levl_eval.protocols.linear.entry import LinearSuite
from levl_eval.protocols.registry import ENTRIES, OPT_IN, PROTOCOLS
from levl_eval.protocols.vlm.entry import VlmSuite
from levl_eval.protocols.zeroshot.entry import ZeroshotSuite
from levl_eval.runner import EvalOptions, check_protocol_names, resolve_device
from levl_model.overrides import OverrideError, replace_field, set_from_text

DEFAULT_SUITE = "synthetic"


@dataclass(frozen=True)
class SuiteBase:
    """Everything an evaluation is run with besides the checkpoints and where the data lies, but
    the protocols' own fields (`EvalSuite` adds those)."""

    name: str
    protocols: tuple[str, ...]
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 256  # images per forward pass
    workers: int = 0  # data-loader worker processes
    random_seed: int = 0  # seed of the random-init baseline
    cache: bool = True  # on-disk feature cache (levl_eval.features.cache)
    cache_dir: str | None = None  # None: $LEVL_FEATURE_CACHE, else ~/.cache/levl/features

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sections(self) -> dict[str, Any]:
        """Each protocol's own section of this suite, by protocol name."""
        return {name: getattr(self, name) for name in SECTIONS}


# The protocols' own sections (`linear`, `zeroshot`, `vlm`, ...) come from their entries
# (levl_eval.protocols.<name>.entry: `section`), so a protocol with settings of its own adds
# its folder and touches nothing here.
SECTIONS: dict[str, type] = {name: e.section for name, e in ENTRIES.items() if e.section is not None}
EvalSuite = dataclasses.make_dataclass(
    "EvalSuite",
    [(name, section, field(default_factory=section)) for name, section in SECTIONS.items()],
    bases=(SuiteBase,), frozen=True,
)
EvalSuite.__module__ = __name__
EvalSuite.__doc__ = """A whole evaluation's config: SuiteBase's fields plus one section for every
    protocol that has fields of its own (`suite.linear.probes`, `--set vlm.epochs=2`)."""


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
                  overrides: list[str] | None = None, add: tuple[str, ...] = ()) -> EvalSuite:
    """The final config: the named suite, then the shorthand options (dotted key -> typed value,
    None = not given; `add` names protocols to run besides the suite's, as an opt-in
    protocol's flag `--vlm` does), then `--set key=value` overrides, checked as a whole."""
    suite = get_suite(name)
    try:
        for key, value in (shorthands or {}).items():
            if value is not None:
                suite = replace_field(suite, key, lambda hint, v=value: v, hidden=("name",))
        added = tuple(name for name in add if name not in suite.protocols)
        if added:
            suite = dataclasses.replace(suite, protocols=(*suite.protocols, *added))
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
    if not suite.cache and suite.cache_dir is not None:
        raise EvalError("--cache and --no-cache contradict each other (cache=false with "
                        "cache_dir set); pass one of them")
    sections = {name: section.checked() for name, section in suite.sections().items()}
    return dataclasses.replace(suite, protocols=protocols, **sections)


def eval_options(suite: EvalSuite, datasets: Path | None = None) -> EvalOptions:
    """The runner's options for a checked suite (device resolved, cache dir made absolute)."""
    root = None
    if suite.cache:
        root = (Path(suite.cache_dir) if suite.cache_dir else default_cache_dir()).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise EvalError(f"--cache {root}: exists and is not a directory; pass a directory")
    return EvalOptions(
        protocols=suite.protocols, device=resolve_device(suite.device),
        batch_size=suite.batch_size, num_workers=suite.workers, random_seed=suite.random_seed,
        datasets=None if datasets is None else str(datasets),
        cache_dir=None if root is None else str(root), sections=suite.sections(),
    )
