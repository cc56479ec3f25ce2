"""`levl-eval all`: every checkpoint, then one random baseline per distinct config, every task
(a protocol on the synthetic world or on a real dataset found under --datasets; either source
may be left out, not both).

Checkpoints are evaluated one at a time and released before the next is loaded, so peak memory is
one model plus its cached features whatever the number of --ckpt.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from levl_eval import __version__
from levl_eval.data.splits import EvalData
from levl_eval.data.world import load_eval_data
from levl_eval.encoder import BaselineSpec, FrozenEncoder, load_frozen_checkpoint, random_encoder
from levl_eval.errors import DeviceError, EvalDataError, EvalError
from levl_eval.features.cache import FeatureCache
from levl_eval.gains import add_gains_over_random
from levl_eval.geometry import SYNTH
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS, build_protocol, protocol_entry
from levl_eval.report import build_report
from levl_eval.tasks import EvalTask, plan_tasks


@dataclass(frozen=True)
class EvalOptions:
    """Everything `levl-eval all` takes besides the checkpoints and the data."""

    protocols: tuple[str, ...] = tuple(name for name in PROTOCOLS if name not in OPT_IN)
    device: str = "cpu"
    batch_size: int = 256
    num_workers: int = 0
    random_seed: int = 0
    datasets: str | None = None  # root of the real datasets (levl_eval.datasets); None: synth only
    cache_dir: str | None = None  # on-disk feature cache (levl_eval.features.cache); None: off
    # each protocol's own suite section by protocol name (its entry's `section`); a protocol
    # left out gets its section's defaults
    sections: Mapping[str, Any] = field(default_factory=dict)

    def section(self, protocol: str) -> Any:
        """The protocol's suite section (None for a protocol that has none)."""
        entry = protocol_entry(protocol)
        if protocol in self.sections:
            return self.sections[protocol]
        return None if entry.section is None else entry.section()

    def protocol_options(self, protocol: str, dataset: str = SYNTH) -> dict:
        """Constructor options of one protocol on one task's dataset, as the protocol's entry
        derives them from its section (levl_eval.protocols.<name>.entry)."""
        return protocol_entry(protocol).options(self.section(protocol), dataset)

    def feature_cache(self) -> FeatureCache | None:
        return None if self.cache_dir is None else FeatureCache(Path(self.cache_dir))


def resolve_device(requested: str) -> str:
    """`auto` → cuda when present; `cuda` on a machine without CUDA is a one-line error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {requested}: CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {requested}: only {torch.cuda.device_count()} CUDA "
                              "device(s) here; pick a lower index")
        return requested
    raise DeviceError(f"--device {requested!r}: unknown device (use cpu, cuda, cuda:N or auto)")


def check_protocol_names(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        protocol_entry(name)  # an unknown name: one line listing the known
    return tuple(dict.fromkeys(names))  # de-duplicated, order kept


def evaluate_encoder(encoder: FrozenEncoder, tasks: list[EvalTask], options: EvalOptions) -> dict:
    """The report entry of one encoder: its facts plus each task's result and timings."""
    results, seconds, built = {}, {}, []
    for task in tasks:
        start = time.perf_counter()
        protocol = shared_protocol(built, task.protocol, encoder.device,
                                   options.protocol_options(task.protocol, task.dataset))
        results[task.key] = protocol.run(encoder, task.data)
        seconds[task.key] = round(time.perf_counter() - start, 3)
    return {"name": encoder.name, **encoder.info, "protocols": results, "seconds": seconds}


def shared_protocol(built: list[tuple[str, dict, EvalProtocol]], name: str, device: str,
                    constructor_options: dict) -> EvalProtocol:
    """The protocol object an earlier task of this encoder was run with under the same
    constructor options, else a new one (added to `built`). One object runs every task of an
    encoder that it can, so a protocol may compute what its tasks share once per encoder (a
    head two of its datasets train on the same data); `built` lives as long as the encoder's
    evaluation."""
    for built_name, built_options, protocol in built:
        if built_name == name and built_options == constructor_options:
            return protocol
    protocol = build_protocol(name, device=device, **constructor_options)
    built.append((name, constructor_options, protocol))
    return protocol


def datasets_root(options: EvalOptions) -> Path | None:
    """The --datasets directory; a root that does not exist is a typo, not 'nothing found'."""
    if options.datasets is None:
        return None
    root = Path(options.datasets).expanduser().absolute()
    if not root.is_dir():
        raise EvalDataError(f"--data-root {root}: no such directory (pass the directory holding "
                            "imagenet/, ADEChallengeData2016/, nyu/, bg_challenge/, coco/, gqa/, "
                            "...; the README lists every layout)")
    return root


def synthetic_world(data_dir: Path | None, options: EvalOptions) -> EvalData | None:
    """The --data world, read and checked; None when only real datasets are asked for. With
    neither source there is nothing to evaluate: one error naming both options."""
    if data_dir is not None:
        return load_eval_data(data_dir)
    if options.datasets is None:
        raise EvalError("nothing to evaluate on: pass --data SYNTH_DIR (a `levl-data synth --out` "
                        "directory) and/or --datasets ROOT (real datasets in their standard layouts)")
    return None


def check_inputs(tasks: list[EvalTask], options: EvalOptions) -> None:
    """Each planned protocol's own check of its inputs (its entry's `check_inputs`, e.g. vlm
    loads --llm), once, before any checkpoint is loaded or feature extracted."""
    for name in dict.fromkeys(task.protocol for task in tasks):
        check = protocol_entry(name).check_inputs
        if check is not None:
            check(options.section(name), options.device)


def unique_name(name: str, taken: set[str]) -> str:
    candidate, index = name, 2
    while candidate in taken:
        candidate, index = f"{name} #{index}", index + 1
    taken.add(candidate)
    return candidate


def run_evaluation(ckpt_paths: list[Path], data_dir: Path | None, options: EvalOptions,
                   on_skipped: Callable[[list[dict]], None] | None = None,
                   suite: Mapping[str, Any] | None = None) -> dict:
    """Evaluate every checkpoint and its random baseline(s); returns the report document.
    `data_dir` None runs only the real datasets under `options.datasets`.
    `on_skipped` hears the tasks that will not run as soon as they are known, before any
    checkpoint is loaded or feature extracted (the CLI prints them then). `suite` is the
    resolved suite `options` were derived from (levl_eval.suites.eval_options), recorded in
    the report as the run's configuration; the options themselves are not (they repeat it)."""
    if not ckpt_paths:
        raise EvalError("no --ckpt given; pass at least one checkpoint or run directory")
    data = synthetic_world(data_dir, options)
    root = datasets_root(options)
    tasks, skipped = plan_tasks(options.protocols, data, root)
    if skipped and on_skipped is not None:
        on_skipped([task.describe() for task in skipped])
    check_inputs(tasks, options)
    entries, baselines, taken, cache = [], {}, set(), options.feature_cache()
    for path in ckpt_paths:
        encoder, spec = load_frozen_checkpoint(
            path, device=options.device, batch_size=options.batch_size,
            num_workers=options.num_workers,
        )
        encoder.name, encoder.feature_cache = unique_name(encoder.name, taken), cache
        entries.append(evaluate_encoder(encoder, tasks, options))
        baselines.setdefault(spec.key(), (spec, []))[1].append(encoder.name)
        del encoder
    entries += evaluate_baselines(list(baselines.values()), tasks, options, taken, cache)
    add_gains_over_random(entries)
    report = build_report(
        encoders=entries, data={} if data is None else data.describe(), protocols=[task.key for task in tasks],
        tasks={task.key: task.describe() for task in tasks},
        skipped=[task.describe() for task in skipped],
        device=options.device, suite=suite, datasets_root=None if root is None else str(root),
        producer={"package": "levl-eval", "version": __version__, "command": sys.argv},
    )
    if cache is not None:
        report["feature_cache"] = {"dir": str(cache.root), "hits": cache.hits, "misses": cache.misses}
    return report


def evaluate_baselines(
    baselines: list[tuple[BaselineSpec, list[str]]], tasks: list[EvalTask], options: EvalOptions,
    taken: set[str], cache: FeatureCache | None = None,
) -> list[dict]:
    """One random-init encoder per distinct (config, preprocessing, tokenizer)."""
    entries = []
    for spec, checkpoints in baselines:
        label = f"random (seed {options.random_seed})"
        if len(baselines) > 1:
            label = f"random (seed {options.random_seed}, config of {checkpoints[0]})"
        encoder = random_encoder(
            spec, seed=options.random_seed, name=unique_name(label, taken),
            device=options.device, batch_size=options.batch_size, num_workers=options.num_workers,
        )
        encoder.feature_cache = cache
        entry = evaluate_encoder(encoder, tasks, options)
        entries.append({**entry, "baseline_for": checkpoints})
    return entries
