"""Linear segmentation on frozen patch tokens (METHOD.md, "Linear segmentation").

Tokens (B, L, D) are standardised per dimension with the train tokens' mean/std, one
nn.Linear with bias maps each token to C logits, and the (B, L, C) logits are permuted to
(B, C, L) before being reshaped to (B, C, h, w): reshaping first would scramble classes into
space. Training: cross-entropy against the labels nearest-downsampled to the token grid (void
255 ignored), AdamW lr 1e-2, 30 epochs. Evaluation: logits upsampled bilinearly to the label
resolution, argmax, one confusion matrix over the test set, mIoU over the classes present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.errors import EvalDataError
from levl_eval.featureset import EvalSplit, FeatureSource, PatchFeatures
from levl_eval.protocols.base import EvalProtocol
from levl_eval.segexamples import EXAMPLE_COUNT, segmentation_examples
from levl_eval.segmetrics import VOID, confusion_matrix, segmentation_metrics
from levl_eval.standardize import TokenStandardizer
from levl_eval.taskdata import SegmentationData


@dataclass(frozen=True)
class SegmentationSettings:
    """The paper's head settings (batch size and weight decay unstated there: ours here)."""

    lr: float = 1e-2
    weight_decay: float = 1e-2
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 16
    seed: int = 0
    std_clamp: float = 1e-8
    label_downsample: str = "nearest"


def token_grid_logits(head: nn.Linear, tokens_BLD: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, L, D) -> (B, C, h, w): permute the class axis forward, then reshape L into (h, w)."""
    logits_BLC = head(tokens_BLD)
    batch, _, classes = logits_BLC.shape
    return logits_BLC.permute(0, 2, 1).reshape(batch, classes, *grid_hw)


def downsample_labels(masks_NHW: torch.Tensor, grid_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Per-pixel labels -> one label per token (nearest: no blending of class ids)."""
    return F.interpolate(masks_NHW[:, None].float(), size=grid_hw, mode=mode)[:, 0].long()


def seeded_head(in_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """nn.Linear with bias, torch's default init drawn from our own seed."""
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(in_dim, num_classes)
    bound = 1.0 / in_dim**0.5
    with torch.no_grad():
        head.weight.copy_(torch.empty(num_classes, in_dim).uniform_(-bound, bound, generator=generator))
        head.bias.copy_(torch.empty(num_classes).uniform_(-bound, bound, generator=generator))
    return head


def train_segmentation_head(
    train: PatchFeatures, standardize: TokenStandardizer, num_classes: int,
    settings: SegmentationSettings, device: str,
) -> nn.Linear:
    """Minibatch cross-entropy on the token grid; batches whose tokens are all void are skipped."""
    head = seeded_head(train.tokens_NLD.shape[-1], num_classes, settings.seed).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    targets_Nhw = downsample_labels(train.masks_NHW, train.grid_hw, settings.label_downsample)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    for _ in range(settings.epochs):
        for batch_B in torch.randperm(train.num_samples, generator=generator).split(settings.batch_size):
            target_Bhw = targets_Nhw[batch_B].to(device)
            if bool((target_Bhw == VOID).all()):
                continue
            tokens_BLD = standardize(train.tokens_NLD[batch_B].to(device))
            logits_BChw = token_grid_logits(head, tokens_BLD, train.grid_hw)
            loss = F.cross_entropy(logits_BChw, target_Bhw, ignore_index=VOID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head.eval()


@torch.no_grad()
def predict_labels(head: nn.Linear, test: PatchFeatures, batch_B: torch.Tensor,
                   standardize: TokenStandardizer, device: str) -> torch.Tensor:
    """Argmax of the logits upsampled bilinearly to label resolution, [B, H, W] on the CPU."""
    label_hw = tuple(test.masks_NHW.shape[-2:])
    logits_BChw = token_grid_logits(head, standardize(test.tokens_NLD[batch_B].to(device)), test.grid_hw)
    logits_BCHW = F.interpolate(logits_BChw, size=label_hw, mode="bilinear", align_corners=False)
    return logits_BCHW.argmax(dim=1).cpu()


@torch.no_grad()
def confusion_on_test(
    head: nn.Linear, test: PatchFeatures, standardize: TokenStandardizer, num_classes: int,
    eval_batch_size: int, device: str,
) -> torch.Tensor:
    """Confusion matrix of the bilinearly upsampled argmax against full-resolution labels."""
    confusion_CC = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for batch_B in torch.arange(test.num_samples).split(eval_batch_size):
        pred_BHW = predict_labels(head, test, batch_B, standardize, device)
        confusion_CC += confusion_matrix(pred_BHW, test.masks_NHW[batch_B], num_classes)
    return confusion_CC


def checked_patches(encoder: FeatureSource, split: EvalSplit, num_classes: int) -> PatchFeatures:
    """The split's patch features, refusing label maps with ids outside the class list."""
    patches = encoder.patch_features(split)
    labels = patches.masks_NHW[patches.masks_NHW != VOID]
    if labels.numel() and int(labels.max()) >= num_classes:
        raise EvalDataError(
            f"split {split.name}: label maps hold class id {int(labels.max())} but the dataset "
            f"lists {num_classes} classes; fix the class list or the masks"
        )
    return patches


class LinearSegmentation(EvalProtocol):
    """Linear head on frozen patch tokens, trained on the train split, mIoU on the test split."""

    name: ClassVar[str] = "segmentation"

    def __init__(self, settings: SegmentationSettings | None = None, device: str = "cpu") -> None:
        super().__init__(device)
        self.head_settings = settings or SegmentationSettings()

    def settings(self) -> dict:
        return {
            **asdict(self.head_settings),
            "feature": "final-norm patch tokens (float16 cache)",
            "preprocessing": "standardise per dimension with train-token mean/std",
            "head": "nn.Linear with bias on each token; (B,L,C) permuted to (B,C,L), reshaped to (B,C,h,w)",
            "optimizer": "AdamW", "schedule": "constant", "loss": "cross-entropy, void 255 ignored",
            "evaluation": "bilinear upsampling of logits to label resolution, argmax",
            "label_resolution": "the model's input crop (resize shorter side + centre crop, nearest)",
            "miou": "mean IoU over classes present in the test ground truth",
        }

    def examples(self, head: nn.Linear, test: PatchFeatures, standardize: TokenStandardizer,
                 data: SegmentationData) -> dict:
        """The first test images with labels and predictions, for the report's figure
        (synthetic world only: small images, and no dataset licence to think about)."""
        if data.dataset != "synth" or (data.test.manifest is None and not data.test.files):
            return {}
        batch_K = torch.arange(min(EXAMPLE_COUNT, test.num_samples))
        pred_KHW = predict_labels(head, test, batch_K, standardize, self.device)
        return {"examples": segmentation_examples(data.test, test.masks_NHW[batch_K], pred_KHW)}

    def run(self, encoder: FeatureSource, data: SegmentationData) -> dict:
        train = checked_patches(encoder, data.train, data.num_classes)
        test = checked_patches(encoder, data.test, data.num_classes)
        standardize = TokenStandardizer.fit(train.tokens_NLD, self.head_settings.std_clamp)
        with torch.enable_grad():
            head = train_segmentation_head(train, standardize, data.num_classes,
                                           self.head_settings, self.device)
        confusion_CC = confusion_on_test(head, test, standardize, data.num_classes,
                                      self.head_settings.eval_batch_size, self.device)
        return {
            **segmentation_metrics(confusion_CC),
            **self.examples(head, test, standardize, data),
            "classes": list(data.classes),
            "settings": self.settings(),
            "data": {"dataset": data.dataset, "train": train.sizes(),
                     "test": test.sizes(), "num_classes": data.num_classes},
        }
