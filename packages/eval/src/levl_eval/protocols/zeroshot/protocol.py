"""Zero-shot classification (METHOD.md, "Evaluation protocols").

Class text = every prompt template filled with the class name; its embedding is the mean of the
L2-normalised per-prompt embeddings, re-normalised (the CLIP prompt ensemble). Logits are cosine
similarities. Four readouts, because a LeVLJEPA model aligns its modalities through predictors
rather than directly: z_v·z_t, pred_v(z_v)·z_t, z_v·pred_t(z_t), and the mean of the three
logit matrices. An encoder without trained predictors (a contrastive baseline) has z_v·z_t only,
and its "average" is that one readout.

Every task is scored with several prompt sets side by side (`prompt_sets` in the result): the
single template "a photo of a {}." and the 80 OpenAI ImageNet templates, as METHOD.md lists
them, and the dataset's own templates when they are neither. The headline is the dataset's own
set — CLIP's templates for that dataset (for ImageNet, the 80 OpenAI templates), a prompts.txt,
or the synthetic world's manifest prompts — because published zero-shot numbers use each
dataset's own templates. Classes are named by the dataset's curated zero-shot names when it has
them (CLIP's for ImageNet), else by its own.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from levl_eval.data.splits import EvalData
from levl_eval.datasets.prompts import OWN_SET, STANDARD_SETS
from levl_eval.errors import EvalError
from levl_eval.features.types import ClassTextFeatures, FeatureSource, SplitFeatures
from levl_eval.metrics import classification_metrics, ranked_classes
from levl_eval.protocols.base import EvalProtocol, checked_image_features, split_sizes
from levl_eval.protocols.segmentation.metrics import confusion_matrix

READOUTS = ("zv_zt", "predv_zt", "zv_predt", "average")
HEADLINE_READOUT = "average"
CLASS_NAMES = ("curated", "dataset")  # ZeroShot(class_names=...): which names fill the prompts
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


def prompt_sets(own: tuple[str, ...]) -> tuple[dict[str, tuple[str, ...]], str]:
    """Every prompt set a task is scored with, and the name of the headline one: the standard
    sets, plus the dataset's own templates unless they equal one of them; the headline is the
    dataset's own, under the standard name it equals (ImageNet's: `openai80`)."""
    sets = dict(STANDARD_SETS)
    headline = next((name for name, templates in sets.items() if templates == tuple(own)), OWN_SET)
    if headline == OWN_SET:
        sets[OWN_SET] = tuple(own)
    return sets, headline


def check_class_names(choice: str) -> str:
    """`curated` or `dataset` (checked before any model loads: the CLI's --class-names)."""
    if choice not in CLASS_NAMES:
        raise EvalError(f"--class-names {choice!r}: unknown; use one of {', '.join(CLASS_NAMES)}")
    return choice


def zeroshot_classes(data: EvalData, choice: str) -> tuple[tuple[str, ...], dict]:
    """The names the templates are filled with, and which ones they are, for the report: the
    curated names when asked for and the dataset has them, else the dataset's own."""
    if choice == "curated" and data.curated_classes:
        if len(data.curated_classes) != data.num_classes:
            raise EvalError(f"{len(data.curated_classes)} curated class names for "
                            f"{data.num_classes} classes ({data.curated_source})")
        return data.curated_classes, {"class_names": "curated", "class_names_source": data.curated_source}
    return data.classes, {"class_names": "dataset", "class_names_source": "the dataset's class names"}


def class_text(encoder: FeatureSource, classes: tuple[str, ...],
               templates: tuple[str, ...]) -> ClassTextFeatures:
    """Every (class, template) text's features, refusing an encoder that returns another shape."""
    text = encoder.class_text_features(classes, templates)
    expected = (len(classes), len(templates))
    if tuple(text.z_CPE.shape[:2]) != expected:
        raise EvalError(
            f"encoder {encoder.name}: class-text features have shape "
            f"{tuple(text.z_CPE.shape)}, expected {expected} + (E,)"
        )
    return text


def score_prompt_set(image: SplitFeatures, text: ClassTextFeatures) -> tuple[dict, torch.Tensor]:
    """Metrics of every readout under one prompt set, and the headline readout's logits (only
    one [N, C] matrix outlives the call: ImageNet's are 200 MB each)."""
    logits = zeroshot_logits(image, text)
    readouts = {readout: classification_metrics(logits_NC, image.labels_N)
                for readout, logits_NC in logits.items()}
    return readouts, logits[HEADLINE_READOUT]


class ZeroShot(EvalProtocol):
    """Zero-shot classification of the test split against the class prompts."""

    name: ClassVar[str] = "zeroshot"

    def __init__(self, device: str = "cpu", class_names: str = "curated") -> None:
        super().__init__(device)
        self.class_names = check_class_names(class_names)

    def settings(self) -> dict:
        return {
            "readouts": dict(READOUT_DESCRIPTIONS),
            "logits": "cosine similarity",
            "prompt_ensemble": "L2-normalise each prompt embedding, mean over prompts, L2-normalise",
            "prompt_sets": {
                "single": list(STANDARD_SETS["single"]),
                "openai80": "the 80 OpenAI CLIP ImageNet templates (levl_eval/datasets/clip_imagenet.json)",
                OWN_SET: "the dataset's own templates (tasks.<task>.data.prompts) when no standard set",
            },
            "headline_prompt_set": "the dataset's own templates (CLIP's for the dataset, prompts.txt "
                                   "or labels.prompts), named by the standard set they equal",
            "class_names": self.class_names,
            "top5": "top-k with k = min(5, num_classes)",
            "headline_readout": HEADLINE_READOUT,
        }

    def run(self, encoder: FeatureSource, data: EvalData) -> dict:
        image = checked_image_features(encoder, data.test, data.num_classes)
        classes, names_used = zeroshot_classes(data, self.class_names)
        sets, headline = prompt_sets(data.prompts)
        results, headline_NC = {}, None
        for name, templates in sets.items():
            readouts, logits_NC = score_prompt_set(image, class_text(encoder, classes, templates))
            results[name] = {"readouts": readouts, "num_prompts": len(templates)}
            if name == headline:
                headline_NC = logits_NC
        readouts = results[headline]["readouts"]
        return {
            **readouts[HEADLINE_READOUT],
            "readout": HEADLINE_READOUT,
            "prompt_set": headline,
            "readouts": readouts,
            "prompt_sets": results,
            **small_confusion(headline_NC, image.labels_N, data.classes),
            "settings": self.settings(),
            "data": {
                "test": split_sizes(data.test, image),
                "num_classes": data.num_classes,
                "num_prompts": len(sets[headline]),
                **names_used,
            },
        }
