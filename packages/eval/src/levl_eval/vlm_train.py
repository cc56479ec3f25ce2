"""Training the `vlm` protocol's bridge on frozen patch tokens under a frozen LLM.

Patch tokens are standardised per dimension with the train tokens' statistics (as the
segmentation head's are), so one learning rate suits encoders whose token scales differ (a
trained checkpoint and its random baseline). Only the bridge's weights are in the optimizer and
only they require gradients; the LLM passes gradients through without changing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from levl_eval.llm import DEFAULT_LLM, FrozenLLM
from levl_eval.standardize import TokenStandardizer
from levl_eval.vlm_bridge import Bridge, answer_loss
from levl_eval.vlm_items import PROMPT, ItemTokens, QAItem


@dataclass(frozen=True)
class VLMSettings:
    """Every knob of the protocol; all land in the report. None = no cap."""

    llm: str = DEFAULT_LLM
    bridge_hidden: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 1
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


@dataclass
class FittedBridge:
    """A trained bridge with the standardisation it was trained under."""

    standardize: TokenStandardizer
    bridge: Bridge
    losses: list[float]

    def prefix(self, tokens_BLD: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.bridge(self.standardize(tokens_BLD.to(device)))


def training_batches(num_items: int, settings: VLMSettings) -> list[torch.Tensor]:
    """Seeded shuffles of the item indices, `epochs` times, cut at `max_steps` batches."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    batches = [batch for _ in range(settings.epochs)
               for batch in torch.randperm(num_items, generator=generator).split(settings.batch_size)]
    return batches[:settings.max_steps] if settings.max_steps is not None else batches


def fit_bridge(
    llm: FrozenLLM, tokens_NLD: torch.Tensor, items: list[QAItem], encoded: list[ItemTokens],
    settings: VLMSettings,
) -> FittedBridge:
    """AdamW on the bridge, next-token cross-entropy on the answer tokens of each batch."""
    device = llm.device
    standardize = TokenStandardizer.fit(tokens_NLD, settings.std_clamp)
    standardize = TokenStandardizer(standardize.mean_D.to(device), standardize.std_D.to(device))
    bridge = Bridge(tokens_NLD.shape[-1], settings.bridge_hidden, llm.width, settings.seed).to(device)
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    fitted, images_N = FittedBridge(standardize, bridge, []), torch.tensor([i.image for i in items])
    with torch.enable_grad():
        for batch_B in training_batches(len(items), settings):
            prefix_BPE = fitted.prefix(tokens_NLD[images_N[batch_B]], device)
            loss = answer_loss(llm, prefix_BPE, [encoded[i].prompt for i in batch_B.tolist()],
                               [encoded[i].answer for i in batch_B.tolist()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            fitted.losses.append(float(loss.detach()))
    bridge.eval()
    return fitted
