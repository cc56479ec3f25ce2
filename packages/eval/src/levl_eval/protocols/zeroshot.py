"""Zero-shot classification (METHOD.md, "Evaluation protocols").

Class text = every prompt template filled with the class name; its embedding is the mean of the
L2-normalised per-prompt embeddings, re-normalised (the CLIP prompt ensemble). Logits are cosine
similarities. Four readouts, because a LeVLJEPA model aligns its modalities through predictors
rather than directly: z_v·z_t, pred_v(z_v)·z_t, z_v·pred_t(z_t), and the mean of the three
logit matrices. An encoder without trained predictors (a contrastive baseline) has z_v·z_t only,
and its "average" is that one readout.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from levl_eval.errors import EvalError
from levl_eval.featureset import ClassTextFeatures, EvalData, FeatureSource, SplitFeatures
from levl_eval.metrics import classification_metrics, ranked_classes
from levl_eval.protocols.base import EvalProtocol, checked_image_features, split_sizes
from levl_eval.segmetrics import confusion_matrix

READOUTS = ("zv_zt", "predv_zt", "zv_predt", "average")
HEADLINE_READOUT = "average"
CONFUSION_MAX_CLASSES = 20  # a larger matrix is unreadable in a report and large in its JSON
READOUT_LABELS = {
    "zv_zt": "z_v·z_t", "predv_zt": "pred_v·z_t", "zv_predt": "z_v·pred_t", "average": "average",
}
READOUT_DESCRIPTIONS = {
    "zv_zt": "z_v . z_t",
    "predv_zt": "pred_v(z_v) . z_t",
    "zv_predt": "z_v . pred_t(z_t)",
    "average": "mean of the three cosine-logit matrices (z_v . z_t alone without predictors)",
}


def prompt_ensemble(emb_CPE: torch.Tensor) -> torch.Tensor:
    """One unit vector per class: normalise each prompt's embedding, average, normalise."""
    return F.normalize(F.normalize(emb_CPE, dim=-1).mean(dim=1), dim=-1)


def cosine_logits(image_NE: torch.Tensor, class_CE: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every image with every class embedding."""
    return F.normalize(image_NE, dim=-1) @ F.normalize(class_CE, dim=-1).T


def zeroshot_logits(image: SplitFeatures, text: ClassTextFeatures) -> dict[str, torch.Tensor]:
    """The readouts' [N, C] logits: all four, or z_v·z_t and its "average" without predictors."""
    z_t_CE = prompt_ensemble(text.z_CPE.float())
    logits = {"zv_zt": cosine_logits(image.z_NE.float(), z_t_CE)}
    if image.pred_NE is not None and text.pred_CPE is not None:
        logits["predv_zt"] = cosine_logits(image.pred_NE.float(), z_t_CE)
        logits["zv_predt"] = cosine_logits(image.z_NE.float(),
                                           prompt_ensemble(text.pred_CPE.float()))
    logits["average"] = torch.stack(list(logits.values())).mean(dim=0)
    return logits


def small_confusion(logits_NC: torch.Tensor, labels_N: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """The headline readout's confusion counts (rows = true class, columns = top-1 prediction,
    ties to the lower index as in top-1) when there are few enough classes to plot them."""
    if len(classes) > CONFUSION_MAX_CLASSES:
        return {}
    pred_N = ranked_classes(logits_NC)[:, 0]
    return {"confusion": confusion_matrix(pred_N, labels_N, len(classes)).tolist(),
            "confusion_classes": list(classes)}


class ZeroShot(EvalProtocol):
    """Zero-shot classification of the test split against the class prompts."""

    name: ClassVar[str] = "zeroshot"

    def settings(self) -> dict:
        return {
            "readouts": dict(READOUT_DESCRIPTIONS),
            "logits": "cosine similarity",
            "prompt_ensemble": "L2-normalise each prompt embedding, mean over prompts, L2-normalise",
            "top5": "top-k with k = min(5, num_classes)",
            "headline_readout": HEADLINE_READOUT,
        }

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        image = checked_image_features(encoder, data.test, data.num_classes)
        text = encoder.class_text_features(data.classes, data.prompts)
        expected = (data.num_classes, len(data.prompts))
        if tuple(text.z_CPE.shape[:2]) != expected:
            raise EvalError(
                f"encoder {encoder.name}: class-text features have shape "
                f"{tuple(text.z_CPE.shape)}, expected {expected} + (E,)"
            )
        logits = zeroshot_logits(image, text)
        readouts = {readout: classification_metrics(logits_NC, image.labels_N)
                    for readout, logits_NC in logits.items()}
        return {
            **readouts[HEADLINE_READOUT],
            "readout": HEADLINE_READOUT,
            "readouts": readouts,
            **small_confusion(logits[HEADLINE_READOUT], image.labels_N, data.classes),
            "settings": self.settings(),
            "data": {
                "test": split_sizes(data.test, image),
                "num_classes": data.num_classes,
                "num_prompts": len(data.prompts),
            },
        }
