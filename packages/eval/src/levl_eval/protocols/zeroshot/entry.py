"""The zeroshot protocol's registration: its synthetic task (the world itself), the
classification datasets, its suite section and option, its columns."""

from __future__ import annotations

from dataclasses import dataclass

from levl_eval.columns import Column
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.protocols.entry import CliOption, ProtocolEntry
from levl_eval.protocols.zeroshot.plots import confusion_plots
from levl_eval.protocols.zeroshot.protocol import ZeroShot, check_class_names


@dataclass(frozen=True)
class ZeroshotSuite:
    """Zero-shot's field of an evaluation suite (every prompt set is always scored side by side)."""

    class_names: str = "curated"  # curated (CLIP's for ImageNet) | dataset

    def checked(self) -> ZeroshotSuite:
        check_class_names(self.class_names)
        return self


def zeroshot_options(section: ZeroshotSuite, dataset: str) -> dict:
    return {"class_names": section.class_names}


def uncurated_class_names(result: dict, task: dict) -> str | None:
    """Published zero-shot numbers fill the prompts with curated class names (CLIP's for
    ImageNet): a dataset that has them, scored with its own names instead, ran another protocol."""
    if result.get("data", {}).get("class_names") != "dataset":
        return None
    if not task.get("data", {}).get("curated_classes"):
        return None  # no curated names to use: the dataset's own are what any run scores with
    return "prompts filled with the dataset's own class names (--class-names dataset), not the curated ones"


ENTRY = ProtocolEntry(
    protocol=ZeroShot,
    order=10,
    synth_task=lambda data: data,
    real_datasets=CLASSIFICATION,
    columns=(Column("zero-shot top-1", ("top1",)), Column("zero-shot top-5", ("top5",)),
             Column("zero-shot mean recall", ("mean_per_class_recall",))),
    readout_table=("Zero-shot readouts", "top1", "top-1"),
    section=ZeroshotSuite,
    cli_options=(
        CliOption("--class-names", "class_names", str,
                  help="`curated` fills the prompts with a dataset's curated names when it has "
                       "them (CLIP's for ImageNet), `dataset` with its own."),
    ),
    options=zeroshot_options,
    plots=confusion_plots,
    paper_deviation=uncurated_class_names,
)
