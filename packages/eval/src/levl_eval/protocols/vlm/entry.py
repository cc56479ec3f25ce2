"""The vlm protocol's registration: its synthetic task, GQA, VQAv2 and POPE, its columns and
gains over random."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.gqa import read_gqa
from levl_eval.datasets.pope import read_pope
from levl_eval.datasets.vqav2 import read_vqav2
from levl_eval.protocols.entry import ProtocolEntry
from levl_eval.protocols.vlm.bridge_store import check_bridges_dir
from levl_eval.protocols.vlm.llm import load_llm
from levl_eval.protocols.vlm.protocol import VLMBackbone
from levl_eval.protocols.vlm.synth import synth_vlm
from levl_eval.protocols.vlm.train import VLMSettings


def vlm_options(options, dataset: str) -> dict:
    return {"settings": VLMSettings(**options.vlm)} if options.vlm else {}


def check_vlm_inputs(options) -> None:
    """Load the --llm and check any --bridges against its width: a wrong name or a bridge made
    for another LLM fails in one line before hours of feature extraction."""
    settings = VLMSettings(**options.vlm)
    llm = load_llm(settings.llm, options.device)
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
    options=vlm_options,
    check_inputs=check_vlm_inputs,
    opt_in=True,  # minutes per encoder on a CPU: `levl-eval all` runs it only with --vlm
)
