"""The MLP and attentive probes (METHOD.md, "MLP and attentive probes"): the reference code's
readouts beyond the linear probe, run by the `linear` protocol when asked (`--probe`).

- MLP probe: the linear probe's CLS preprocessing (L2-normalise, standardise with train
  statistics), then Linear → GELU → Linear. It reads what a linear layer cannot (an XOR of
  feature signs, a class carved out by a curve).
- Attentive probe: patch tokens standardised per dimension, one cross-attention block whose
  single learned query attends over them (pre-norm attention and MLP, both residual), then a
  linear classifier. It reads what the CLS token does not summarise (an object in one patch).

Both train with AdamW and a cosine schedule from seeded initial weights and a seeded shuffle
(`levl_eval.heads.fit_head`, as every head), so a rerun gives the same numbers. CLS features
and patch tokens stay in their (mapped) cache and are standardised a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.heads import HeadTraining, fit_head, seeded_module
from levl_eval.metrics import TOP_K, metrics_of_top_classes, top_classes
from levl_eval.standardize import Standardizer, TokenStandardizer

PROBE_NAMES: tuple[str, ...] = ("linear", "mlp", "attentive")
DEFAULT_PROBES: tuple[str, ...] = PROBE_NAMES[:1]  # the paper's linear probe alone


@dataclass(frozen=True)
class MLPProbeSettings:
    """A 2-layer MLP on the CLS feature; every field lands in the report."""

    hidden: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 50
    seed: int = 0
    std_clamp: float = 1e-8


@dataclass(frozen=True)
class AttentiveProbeSettings:
    """One cross-attention block with a learned query over the patch tokens.

    num_heads 0 means width // 64 (at least 1; ViT-B: 12), the usual 64-dim heads.
    """

    num_heads: int = 0
    mlp_ratio: float = 4.0
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 256
    epochs: int = 20
    seed: int = 0
    std_clamp: float = 1e-8
    eval_batch_size: int = 256


def attention_heads(width: int, requested: int) -> int:
    """The head count used: the requested one, or 64-dim heads, falling back to one head."""
    heads = requested or max(1, width // 64)
    return heads if width % heads == 0 else 1


class MLPProbe(nn.Module):
    """Linear → GELU → Linear on a standardised CLS feature."""

    def __init__(self, width: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, num_classes))

    def forward(self, cls_BD: torch.Tensor) -> torch.Tensor:
        return self.layers(cls_BD)


class AttentiveProbe(nn.Module):
    """A learned query cross-attends over the tokens (pre-norm block), then a linear classifier."""

    def __init__(self, width: int, num_classes: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.query_11D = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.token_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.out_norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, tokens_BLD: torch.Tensor) -> torch.Tensor:
        keys_BLD = self.token_norm(tokens_BLD)
        query_B1D = self.query_11D.expand(tokens_BLD.shape[0], -1, -1)
        pooled_B1D = query_B1D + self.attention(query_B1D, keys_BLD, keys_BLD, need_weights=False)[0]
        pooled_B1D = pooled_B1D + self.mlp(self.mlp_norm(pooled_B1D))
        return self.classifier(self.out_norm(pooled_B1D[:, 0]))


def train_classifier(
    module: nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor], labels_N: torch.Tensor,
    training: HeadTraining, device: str, *, desc: str = "probe",
) -> nn.Module:
    """Minibatch cross-entropy (the linear probe's at a constant rate, these probes' under a
    cosine decay); the trained module, in eval mode.

    `inputs(indices_B)` gives the batch's (standardised) inputs on `device`, so a large float16
    token cache is converted one batch at a time. `desc` labels the training's progress bar.
    """
    def batch_loss(batch_B: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(module(inputs(batch_B)), labels_N[batch_B].to(device))

    fit_head(module, labels_N.shape[0], batch_loss, training, device, desc=desc)
    return module


@torch.no_grad()
def batched_metrics(module: nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor],
                    labels_N: torch.Tensor, num_classes: int, batch_size: int) -> dict:
    """classification_metrics of the module's logits, computed a batch at a time: only each
    row's best classes are kept, never the [N, C] logits (ImageNet train's are 5 GB)."""
    top_NK = [top_classes(module(inputs(batch_B)).float().cpu())
              for batch_B in torch.arange(len(labels_N)).split(batch_size)]
    empty_NK = torch.zeros(0, min(TOP_K, num_classes), dtype=torch.long)
    return metrics_of_top_classes(torch.cat(top_NK) if top_NK else empty_NK, labels_N, num_classes)


def scored(module: nn.Module, train_inputs: Callable, train_labels_N: torch.Tensor,
           test_inputs: Callable, test_labels_N: torch.Tensor, num_classes: int,
           batch_size: int) -> dict:
    """Test metrics plus train top-1 (train accuracy shows under- or over-fitting)."""
    metrics = batched_metrics(module, test_inputs, test_labels_N, num_classes, batch_size)
    train = batched_metrics(module, train_inputs, train_labels_N, num_classes, batch_size)
    return {**metrics, "train_top1": train["top1"]}


def mlp_probe_metrics(
    train_ND: torch.Tensor, train_labels_N: torch.Tensor, test_ND: torch.Tensor,
    test_labels_N: torch.Tensor, num_classes: int, settings: MLPProbeSettings, device: str = "cpu",
) -> dict:
    """Train the MLP probe on standardised train CLS features; score test and train."""
    standardize = Standardizer.fit(train_ND, settings.std_clamp)
    train_x = standardize.reader(train_ND, device)  # a batch at a time: never a whole copy
    probe = seeded_module(settings.seed,
                          lambda: MLPProbe(train_ND.shape[1], settings.hidden, num_classes))
    probe = train_classifier(probe, train_x, train_labels_N,
                             HeadTraining.of(settings, schedule="cosine"), device, desc="mlp probe")
    return scored(probe, train_x, train_labels_N, standardize.reader(test_ND, device),
                  test_labels_N, num_classes, settings.batch_size)


def attentive_probe_metrics(
    train_NLD: torch.Tensor, train_labels_N: torch.Tensor, test_NLD: torch.Tensor,
    test_labels_N: torch.Tensor, num_classes: int, settings: AttentiveProbeSettings,
    device: str = "cpu",
) -> dict:
    """Train the attentive probe on standardised train patch tokens; score test and train."""
    standardize = TokenStandardizer.fit(train_NLD, settings.std_clamp)
    width = train_NLD.shape[-1]
    heads = attention_heads(width, settings.num_heads)
    probe = seeded_module(settings.seed,
                          lambda: AttentiveProbe(width, num_classes, heads, settings.mlp_ratio))

    def reader(tokens_NLD: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda batch_B: standardize(tokens_NLD[batch_B].to(device))

    probe = train_classifier(probe, reader(train_NLD), train_labels_N,
                             HeadTraining.of(settings, schedule="cosine"), device,
                             desc="attentive probe")
    metrics = scored(probe, reader(train_NLD), train_labels_N, reader(test_NLD), test_labels_N,
                     num_classes, settings.eval_batch_size)
    return {**metrics, "num_heads": heads}
