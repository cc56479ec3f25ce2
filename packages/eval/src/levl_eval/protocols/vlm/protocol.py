"""Frozen-VLM backbone (METHOD.md, "Frozen VLM backbone").

The encoder's final-norm patch tokens go through a trained bridge (Linear → GELU → Linear) into
the input embeddings of a frozen causal LM, as a prefix before the question; the prompt ends
"Answer the question using a single word or phrase." Only the bridge trains, with next-token
cross-entropy on the answer tokens of the train split's questions: VQA training questions on
real data (POPE's bridge trains on VQAv2's, never on POPE's own: levl_eval.datasets.pope), under
a budget recorded in the settings (VLMSettings.for_dataset). On the test split, open-ended
questions (attribute, count; GQA, VQAv2) are answered greedily and scored with the official VQA
accuracy (and min(1, n/3) beside it) and exact match; yes/no existence questions are decided by
P(yes) vs P(no) at the first answer token and scored with POPE's metrics per negative kind. The
runner adds `gain_over_random`: these numbers minus those of the randomly initialised encoder of
the same architecture under the same bridge budget.

VQAv2's and POPE's bridges are one bridge: both train on VQAv2's train2014 questions (POPE's
images are val2014, so none is dropped) under the same settings. A VLMBackbone keeps the bridges
it trained for the encoder it last ran (`TrainedBridges`), keyed by the questions and settings
they were trained on, so the runner, which runs all of an encoder's vlm tasks on one protocol
object, trains that bridge once per encoder; the second task scores with the very same weights,
so its numbers are bitwise those a second training would give (fitting is seeded).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets.qa_split import capped_qa_split
from levl_eval.features.types import FeatureSource, PatchFeatures
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.vlm.answer import YES_FORMS, greedy_answers, yes_no_answers
from levl_eval.protocols.vlm.bridge_store import bridge_path, load_bridge, save_bridge
from levl_eval.protocols.vlm.data import VQAData
from levl_eval.protocols.vlm.items import QAItem, item_tokens, split_items
from levl_eval.protocols.vlm.llm import FrozenLLM, load_llm
from levl_eval.protocols.vlm.scores import example_answers, open_scores, pope_scores
from levl_eval.protocols.vlm.train import FittedBridge, VLMSettings, fit_bridge


@dataclass
class TrainedBridge:
    """A bridge trained in this run: what it was trained on (the train split after the budget's
    cap, the task's settings, the patch-token width), the report's sizes of that data, and the
    dataset of the task that trained it."""

    split: EvalSplit
    settings: VLMSettings
    token_dim: int
    fitted: FittedBridge
    sizes: dict
    dataset: str


@dataclass
class TrainedBridges:
    """The bridges trained for one encoder (the last one asked about): a bridge trained on the
    same questions under the same settings is found instead of trained again. Holding the
    encoder keeps its identity from being reused while its bridges are kept; asking about
    another encoder drops them."""

    encoder: Any = None
    bridges: list[TrainedBridge] = field(default_factory=list)

    def find(self, encoder: FeatureSource, split: EvalSplit, settings: VLMSettings,
             token_dim: int) -> TrainedBridge | None:
        if encoder is not self.encoder:
            self.encoder, self.bridges = encoder, []
        return next((b for b in self.bridges if (b.settings, b.token_dim) == (settings, token_dim)
                     and b.split == split), None)

    def keep(self, bridge: TrainedBridge) -> None:
        self.bridges.append(bridge)


class VLMBackbone(EvalProtocol):
    """Bridge trained on eval-train questions under a frozen LLM, scored on eval-test's."""

    name: ClassVar[str] = "vlm"

    def __init__(self, settings: VLMSettings | None = None, device: str = "cpu",
                 llm: FrozenLLM | None = None) -> None:
        super().__init__(device)
        self.vlm_settings = settings or VLMSettings()
        self.llm = llm  # injected (tests); otherwise loaded by name on first use
        self.trained = TrainedBridges()  # VQAv2's bridge is POPE's: trained once per encoder

    def settings(self, dataset: str | None = None) -> dict:
        """The knobs; for a task's `dataset`, with the bridge budget it ran under and its origin."""
        s = self.vlm_settings if dataset is None else self.vlm_settings.for_dataset(dataset)
        llm = self.llm.name if self.llm is not None else s.llm
        budget = {} if dataset is None else {"budget": self.vlm_settings.budget_origin(dataset)}
        return {
            **asdict(s), "llm": llm, **budget,
            "feature": "final-norm patch tokens, standardised with train mean/std",
            "bridge": "Linear → GELU → Linear into the LLM's input-embedding width",
            "sequence": "[BOS] + bridge(patch tokens) + prompt + answer + EOS",
            "loss": "next-token cross-entropy on answer tokens only; LLM frozen",
            "optimizer": "AdamW", "schedule": "constant",
            "open_answers": f"greedy, at most {self.vlm_settings.max_answer_tokens} tokens, first line",
            "yes_no": f"P(yes) vs P(no) at the first answer token (forms {list(YES_FORMS)} vs lower/title no)",
            "vqa_accuracy": "official VQA script: mean over the leave-one-human-out subsets of "
                            "min(1, #matching humans / 3); a single stored answer counts as 10 humans",
            "vqa_accuracy_simple": "min(1, #matching humans / 3) over all humans, same normalisation",
        }

    def frozen_llm(self) -> FrozenLLM:
        if self.llm is None:
            self.llm = load_llm(self.vlm_settings.llm, self.device)
        return self.llm

    def run(self, encoder: FeatureSource, data: VQAData) -> dict:
        s, llm = self.vlm_settings.for_dataset(data.dataset), self.frozen_llm()
        test = encoder.patch_features(data.test)
        test_items = split_items(test.qa, data.test.name, s.max_test_questions)
        fitted, train_sizes = self.bridge(encoder, data, test.tokens_NLD.shape[-1], s)
        scores = self.score(fitted, test.tokens_NLD, test_items)
        return {
            **scores,
            "train_steps": len(fitted.losses),
            "train_loss_first": fitted.losses[0] if fitted.losses else None,
            "train_loss_last": fitted.losses[-1] if fitted.losses else None,
            "settings": self.settings(data.dataset),
            "data": {"dataset": data.dataset, "llm": llm.describe(),
                     "train": train_sizes, "test": qa_sizes(data.test, test, test_items)},
        }

    def bridge(self, encoder: FeatureSource, data: VQAData, token_dim: int,
               s: VLMSettings) -> tuple[FittedBridge, dict]:
        """The bridge saved under --bridges (no train split is read), or one trained on the
        questions of the train images its budget allows (kept under --save-bridges), or the one
        an earlier task of this encoder trained on the same questions under the same settings
        (`bridge_trained_for` names that task's dataset); with what the report says about its data."""
        llm = self.frozen_llm()
        name = getattr(encoder, "name", "encoder")
        if s.bridges is not None:
            path = bridge_path(s.bridges, name, data.dataset)
            return load_bridge(path, llm, token_dim), {"bridge_loaded_from": str(path)}
        split = capped_qa_split(data.train, s.train_images)
        trained = self.trained.find(encoder, split, s, token_dim)
        if trained is None:
            train = encoder.patch_features(split)
            items = split_items(train.qa, split.name, s.max_train_questions)
            fitted = fit_bridge(llm, train.tokens_NLD, items, self.encoded(items), s)
            trained = TrainedBridge(split, s, token_dim, fitted, qa_sizes(split, train, items), data.dataset)
            self.trained.keep(trained)
            sizes = copy.deepcopy(trained.sizes)
        else:  # the same questions under the same settings: the same bridge, not trained again
            sizes = {**copy.deepcopy(trained.sizes), "bridge_trained_for": trained.dataset}
        fitted = trained.fitted
        if s.save_bridges is not None:
            sizes["bridge_saved_to"] = str(save_bridge(bridge_path(s.save_bridges, name, data.dataset),
                                                       fitted, llm))
        return fitted, sizes

    def encoded(self, items: list[QAItem]) -> list:
        llm = self.frozen_llm()
        return [item_tokens(llm.encode, item, self.vlm_settings.prompt, llm.tokenizer.eos_token_id)
                for item in items]

    def score(self, fitted: FittedBridge, tokens_NLD: torch.Tensor, items: list[QAItem]) -> dict:
        """Open-ended and yes/no metrics on the test questions (either kind may be absent)."""
        llm, s = self.frozen_llm(), self.vlm_settings
        open_items = [item for item in items if not item.is_yes_no]
        yes_no_items = [item for item in items if item.is_yes_no]
        result: dict = {}
        if open_items:
            predictions = greedy_answers(llm, fitted, tokens_NLD, open_items, self.encoded(open_items), s)
            result |= {**open_scores(open_items, predictions),
                       "examples": example_answers(open_items, predictions)}
        if yes_no_items:
            said_yes = yes_no_answers(llm, fitted, tokens_NLD, yes_no_items, self.encoded(yes_no_items), s)
            result |= pope_scores(yes_no_items, said_yes)
        return result


def qa_sizes(split: EvalSplit, features: PatchFeatures, items: list[QAItem]) -> dict:
    """Which split, images read, questions used (per type) and skipped samples, for the report
    (the train split's name says where the bridge's questions came from)."""
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    return {"split": split.name, "images": features.num_samples, "questions": len(items),
            "by_type": kinds, "skipped": dict(features.skipped)}
