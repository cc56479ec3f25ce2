"""The linear protocol's registration: its synthetic task (the world itself), the classification
datasets, its suite section and options, its columns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from levl_eval.columns import Column
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.errors import EvalError
from levl_eval.geometry import SYNTH, probe_geometry
from levl_eval.probes import DEFAULT_PROBES, PROBE_NAMES
from levl_eval.protocols.entry import CliOption, ProtocolEntry
from levl_eval.protocols.linear.protocol import LinearProbe, check_probe_names


@dataclass(frozen=True)
class LinearSuite:
    """The probes' fields of an evaluation suite (`linear.*`)."""

    probes: tuple[str, ...] = DEFAULT_PROBES  # linear, mlp, attentive (or all)
    # on a real dataset's train split: at most this many images per class; None: every image
    train_per_class_cap: int | None = None

    def checked(self) -> LinearSuite:
        """Known probe names (`all` spelled out, duplicates dropped) and a positive cap."""
        if self.train_per_class_cap is not None and self.train_per_class_cap < 1:
            raise EvalError(f"linear.train_per_class_cap={self.train_per_class_cap} must be "
                            "at least 1 (or none for every image)")
        return dataclasses.replace(self, probes=check_probe_names(self.probes))


def linear_options(section: LinearSuite, dataset: str) -> dict:
    """The probes read the paper's geometry on real datasets and the checkpoint's own on the
    synthetic world (levl_eval.geometry); the per-class cap applies to real datasets only."""
    cap = None if dataset == SYNTH else section.train_per_class_cap
    return {"probes": section.probes, "geometry": probe_geometry(dataset), "train_per_class_cap": cap}


def capped_train_set(result: dict, task: dict) -> str | None:
    """The paper's probes train on the whole train split: a per-class cap that left out images
    makes the numbers another protocol's (a cap above every class's count changes nothing)."""
    cap = result.get("settings", {}).get("train_per_class_cap")
    train = result.get("data", {}).get("train", {})
    before, after = train.get("files_before_cap"), train.get("files_after_cap")
    if cap is None or before is None or after is None or after >= before:
        return None
    return (f"train set capped at {cap} images/class ({after} of {before} images; "
            "the paper's probe trains on the whole split)")


ENTRY = ProtocolEntry(
    protocol=LinearProbe,
    order=20,
    synth_task=lambda data: data,
    real_datasets=CLASSIFICATION,
    columns=(Column("linear top-1", ("top1",)), Column("linear top-5", ("top5",)),
             Column("linear mean recall", ("mean_per_class_recall",))),
    # shown only when some encoder has a value (probes run on request, `--probe`)
    optional_columns=(Column("MLP probe top-1", ("probes", "mlp", "top1")),
                      Column("attentive probe top-1", ("probes", "attentive", "top1"))),
    section=LinearSuite,
    cli_options=(
        CliOption("--probe", "probes", str, repeatable=True,
                  help=f"probe to train (repeatable, or `all`: {', '.join(PROBE_NAMES)}; default: "
                       "the suite's, linear.probes)."),
        CliOption("--train-per-class-cap", "train_per_class_cap", int, min=1,
                  help="train the probes on at most N images per class of a real dataset's train "
                       "split (evenly spaced; default: every image, as the paper); recorded in "
                       "the report."),
    ),
    options=linear_options,
    paper_deviation=capped_train_set,
)
