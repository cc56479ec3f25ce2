"""Training the `vlm` protocol's bridge on frozen patch tokens under a frozen LLM.

Patch tokens are standardised per dimension with the train tokens' statistics (as the
segmentation head's are), so one learning rate suits encoders whose token scales differ (a
trained checkpoint and its random baseline). Only the bridge's weights are in the optimizer and
only they require gradients; the LLM passes gradients through without changing.

The bridge's budget (how many training images and questions, how many epochs) is part of the
settings and lands in the report. METHOD.md gives no number for it (the paper trains the bridge
on the VQA training questions), so a real dataset's default is as close to the whole training
split as one GPU machine holds: one epoch over every question of at most 20,000 training images
(evenly spaced). What binds is not the GPU but the cached patch tokens: ViT-B/16's are ~0.3 MB
an image in float16, held in memory for every vlm task of an encoder and written to the
feature cache, so 20,000 images are ~6 GB per train split (~110k VQAv2 / ~260k GQA
questions), where the whole of VQAv2's and GQA's train splits would be ~47 GB per encoder. The
synthetic world keeps its small budget: its whole eval-train split (read from its manifest, so
never cut by image) for one epoch. `VLMSettings.for_dataset` applies the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from levl_eval.errors import EvalError
from levl_eval.geometry import SYNTH
from levl_eval.heads import HeadTraining, fit_head
from levl_eval.protocols.vlm.bridge import Bridge, answer_loss
from levl_eval.protocols.vlm.items import PROMPT, ItemTokens, QAItem
from levl_eval.protocols.vlm.llm import DEFAULT_LLM, FrozenLLM
from levl_eval.standardize import TokenStandardizer


@dataclass(frozen=True)
class BridgeBudget:
    """How much the bridge trains: the questions of at most `train_images` training images
    (evenly spaced; None: every one), at most `train_questions` of them (None: all), `epochs`
    passes."""

    train_images: int | None
    train_questions: int | None
    epochs: int


SYNTH_BUDGET = BridgeBudget(train_images=None, train_questions=None, epochs=1)
REAL_BUDGET = BridgeBudget(train_images=20_000, train_questions=None, epochs=1)
BUDGET_FIELDS = ("train_images", "max_train_questions", "epochs")
COUNT_FIELDS = ("epochs", "train_images", "max_steps", "max_train_questions", "max_test_questions")


@dataclass(frozen=True)
class VLMSettings:
    """Every knob of the protocol; all land in the report. None = no cap, except for the
    budget (`train_images`, `epochs`), where None takes the dataset's default (`for_dataset`)."""

    llm: str = DEFAULT_LLM
    bridge_hidden: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int | None = None
    train_images: int | None = None
    max_steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int = 32
    max_answer_tokens: int = 8
    prompt: str = PROMPT
    seed: int = 0
    max_train_questions: int | None = None
    max_test_questions: int | None = None
    std_clamp: float = 1e-6
    bridges: str | None = None  # score with the bridges saved here instead of training (--bridges)
    save_bridges: str | None = None  # keep every trained bridge here (--save-bridges)

    def __post_init__(self) -> None:
        """A count below 1 would train on nothing or loop forever: refuse it in one line."""
        for name in COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EvalError(f"vlm setting {name}={value}: must be at least 1 (or unset for "
                                "the default)")

    def for_dataset(self, dataset: str) -> VLMSettings:
        """The settings a task runs under: the budget's unset fields from the dataset's default.
        The synthetic world's eval-train is read whole from its manifest, so it is never cut by
        image (as the probes' per-class cap); its epochs and question cap still apply."""
        default = SYNTH_BUDGET if dataset == SYNTH else REAL_BUDGET
        images = None if dataset == SYNTH else self.train_images or default.train_images
        return replace(self, epochs=self.epochs or default.epochs, train_images=images,
                       max_train_questions=self.max_train_questions or default.train_questions)

    def budget_origin(self, dataset: str) -> str:
        """Where the task's budget came from, for the report."""
        kind = "the synthetic world's" if dataset == SYNTH else "a real dataset's"
        used = [name for name in BUDGET_FIELDS if not (dataset == SYNTH and name == "train_images")]
        given = [name for name in used if getattr(self, name) is not None]
        return f"{kind} default" + (f", except {', '.join(given)} as set" if given else "")


@dataclass
class FittedBridge:
    """A trained bridge with the standardisation it was trained under."""

    standardize: TokenStandardizer
    bridge: Bridge
    losses: list[float]

    def prefix(self, tokens_BLD: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.bridge(self.standardize(tokens_BLD.to(device)))


def bridge_training(settings: VLMSettings) -> HeadTraining:
    """The bridge's training: `epochs` seeded shuffles of the questions at a constant rate, cut
    at `max_steps` batches."""
    if settings.epochs is None:
        raise ValueError("VLMSettings.epochs is unset: train under settings.for_dataset(...)")
    return HeadTraining.of(settings, max_steps=settings.max_steps)


def fit_bridge(
    llm: FrozenLLM, tokens_NLD: torch.Tensor, items: list[QAItem], encoded: list[ItemTokens],
    settings: VLMSettings,
) -> FittedBridge:
    """AdamW on the bridge, next-token cross-entropy on the answer tokens of each batch."""
    device = llm.device
    standardize = TokenStandardizer.fit(tokens_NLD, settings.std_clamp)
    standardize = TokenStandardizer(standardize.mean_D.to(device), standardize.std_D.to(device))
    bridge = Bridge(tokens_NLD.shape[-1], settings.bridge_hidden, llm.width, settings.seed)
    fitted, images_N = FittedBridge(standardize, bridge, []), torch.tensor([i.image for i in items])

    def batch_loss(batch_B: torch.Tensor) -> torch.Tensor:
        prefix_BPE = fitted.prefix(tokens_NLD[images_N[batch_B]], device)
        return answer_loss(llm, prefix_BPE, [encoded[i].prompt for i in batch_B.tolist()],
                           [encoded[i].answer for i in batch_B.tolist()])

    fitted.losses = fit_head(bridge, len(items), batch_loss, bridge_training(settings), device,
                             desc="vlm bridge")
    return fitted
