"""Linear segmentation on frozen patch tokens (METHOD.md, "Linear segmentation").

Images reach the encoder whole (`levl_eval.geometry.FULL_FRAME`: the frame resized to the
checkpoint's size, no crop). Tokens (B, L, D) are standardised per dimension with the train
tokens' mean/std, one nn.Linear with bias maps each token to C logits, and the (B, L, C) logits
are permuted to (B, C, L) before being reshaped to (B, C, h, w): reshaping first would scramble
classes into space. Training: cross-entropy against the labels downsampled to the token grid
with `nearest-exact` (each patch's centre pixel; `nearest` would take its top-left), void 255
ignored, AdamW lr 1e-2, 30 epochs. Evaluation, as mmsegmentation scores: each image's logits are
upsampled bilinearly (align_corners=False) to its label's original H x W, the full frame, argmax,
and one confusion matrix accumulates over the test set, an image at a time so the split's
full-resolution logits are never held together; mIoU as `levl_eval.protocols.segmentation.metrics` defines it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.data.splits import EvalSplit
from levl_eval.errors import EvalDataError
from levl_eval.features.types import FeatureSource, PatchFeatures
from levl_eval.geometry import FULL_FRAME
from levl_eval.heads import HeadTraining, fit_head, seeded_linear
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.segmentation.data import SegmentationData
from levl_eval.protocols.segmentation.examples import EXAMPLE_COUNT, segmentation_examples
from levl_eval.protocols.segmentation.metrics import VOID, confusion_matrix, segmentation_metrics
from levl_eval.standardize import TokenStandardizer

LABEL_RESOLUTION = "full frame at the label's original resolution, bilinear logits"


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
    label_downsample: str = "nearest-exact"


def token_grid_logits(head: nn.Linear, tokens_BLD: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, L, D) -> (B, C, h, w): permute the class axis forward, then reshape L into (h, w)."""
    logits_BLC = head(tokens_BLD)
    batch, _, classes = logits_BLC.shape
    return logits_BLC.permute(0, 2, 1).reshape(batch, classes, *grid_hw)


def downsample_labels(masks_NHW: torch.Tensor, grid_hw: tuple[int, int], mode: str,
                      chunk: int = 256) -> torch.Tensor:
    """Per-pixel labels -> one uint8 label per token, a pixel's own id (no blending of class
    ids); `nearest-exact` takes the pixel at each patch's centre, `nearest` its top-left one.
    A chunk of images at a time: the maps may be a mapped file larger than memory."""
    parts = [F.interpolate(part_NHW[:, None].float(), size=grid_hw, mode=mode)[:, 0].to(torch.uint8)
             for part_NHW in masks_NHW.split(chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, *grid_hw, dtype=torch.uint8)


def to_frame(values_BChw: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """Grid values upsampled bilinearly onto a label's frame (align_corners=False: each token's
    value sits at its patch's centre, as mmsegmentation resizes logits to the original image)."""
    return F.interpolate(values_BChw, size=frame_hw, mode="bilinear", align_corners=False)


def train_segmentation_head(
    train: PatchFeatures, standardize: TokenStandardizer, num_classes: int,
    settings: SegmentationSettings, device: str,
) -> nn.Linear:
    """Minibatch cross-entropy on the token grid at a constant learning rate; batches whose
    tokens are all void are skipped (no step: there is nothing to learn from)."""
    head = seeded_linear(train.tokens_NLD.shape[-1], num_classes, settings.seed)
    targets_Nhw = downsample_labels(train.masks_NHW, train.grid_hw, settings.label_downsample)

    def batch_loss(batch_B: torch.Tensor) -> torch.Tensor | None:
        target_Bhw = targets_Nhw[batch_B].to(device).long()
        if bool((target_Bhw == VOID).all()):
            return None
        tokens_BLD = standardize(train.tokens_NLD[batch_B].to(device))
        logits_BChw = token_grid_logits(head, tokens_BLD, train.grid_hw)
        return F.cross_entropy(logits_BChw, target_Bhw, ignore_index=VOID)

    fit_head(head, train.num_samples, batch_loss, HeadTraining.of(settings), device,
             desc="segmentation head")
    return head


@torch.no_grad()
def frame_predictions(head: nn.Linear, test: PatchFeatures, batch_B: torch.Tensor,
                      standardize: TokenStandardizer, device: str) -> Iterator[torch.Tensor]:
    """Each image's [H, W] argmax at its own label's frame, on `device`, one image at a time:
    frames differ in size, and C full-resolution logit maps are large."""
    logits_BChw = token_grid_logits(head, standardize(test.tokens_NLD[batch_B].to(device)), test.grid_hw)
    maps = test.scored_maps()
    for logits_Chw, index in zip(logits_BChw, batch_B.tolist(), strict=True):
        yield to_frame(logits_Chw[None], tuple(maps[index].shape))[0].argmax(dim=0)


@torch.no_grad()
def confusion_on_test(
    head: nn.Linear, test: PatchFeatures, standardize: TokenStandardizer, num_classes: int,
    eval_batch_size: int, device: str,
) -> torch.Tensor:
    """One confusion matrix of the upsampled argmax against every full-frame label of the split
    (mmseg's areas summed over images, not an average of per-image scores)."""
    confusion_CC = torch.zeros(num_classes, num_classes, dtype=torch.long)
    maps = test.scored_maps()
    for batch_B in torch.arange(test.num_samples).split(eval_batch_size):
        predictions = frame_predictions(head, test, batch_B, standardize, device)
        for pred_HW, index in zip(predictions, batch_B.tolist(), strict=True):
            confusion_CC += confusion_matrix(pred_HW, maps[index].to(device), num_classes).cpu()
    return confusion_CC


def largest_class_id(maps: Sequence[torch.Tensor]) -> int:
    """The largest non-void id over every map (-1 when all are void), one map at a time."""
    largest = -1
    for label_HW in maps:
        labels = label_HW[label_HW != VOID]
        largest = max(largest, int(labels.max())) if labels.numel() else largest
    return largest


def checked_patches(encoder: FeatureSource, split: EvalSplit, num_classes: int,
                    frame_maps: bool = False) -> PatchFeatures:
    """The split's patch features under the full-frame geometry (with its maps at their
    original resolution when it is scored), refusing ids outside the class list."""
    patches = encoder.patch_features(split, FULL_FRAME, frame_maps=frame_maps)
    largest = largest_class_id(patches.scored_maps())
    if largest >= num_classes:
        raise EvalDataError(
            f"split {split.name}: label maps hold class id {largest} but the dataset "
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
            "geometry": FULL_FRAME.describe(),
            "train_labels": "labels through the input geometry (nearest), then nearest-exact to "
                            "the token grid (each patch's centre pixel)",
            "evaluation": "logits upsampled bilinearly (align_corners=False) to each label's "
                          "original H x W, argmax, one confusion matrix over the test set",
            "label_resolution": LABEL_RESOLUTION,
            "miou": "mmsegmentation's: per-class intersection and union summed over the test "
                    "set, void ignored, mean over classes with a nonzero union (a class "
                    "predicted but absent from the ground truth counts with IoU 0)",
            "pixel_accuracy": "mmsegmentation's aAcc: correct over all non-void pixels",
        }

    def examples(self, head: nn.Linear, test: PatchFeatures, standardize: TokenStandardizer,
                 data: SegmentationData) -> dict:
        """The first test images with labels and predictions, for the report's figure
        (synthetic world only: small images, and no dataset licence to think about)."""
        if data.dataset != "synth" or (data.test.manifest is None and not data.test.files):
            return {}
        batch_K = torch.arange(min(EXAMPLE_COUNT, test.num_samples))
        pred_KHW = torch.stack(list(frame_predictions(head, test, batch_K, standardize, self.device))).cpu()
        masks_KHW = torch.stack([test.scored_maps()[index] for index in batch_K.tolist()])
        return {"examples": segmentation_examples(data.test, masks_KHW, pred_KHW)}

    def run(self, encoder: FeatureSource, data: SegmentationData) -> dict:
        train = checked_patches(encoder, data.train, data.num_classes)
        test = checked_patches(encoder, data.test, data.num_classes, frame_maps=True)
        standardize = TokenStandardizer.fit(train.tokens_NLD, self.head_settings.std_clamp)
        head = train_segmentation_head(train, standardize, data.num_classes, self.head_settings,
                                       self.device)
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
