"""Image↔text retrieval Recall@K (METHOD.md, "Retrieval", beyond the paper).

Similarity = cosine of z_v and z_t (both L2-normalised). Image→text: an image scores a hit at K
when any of its captions is among the K most similar captions; text→image: a caption scores a
hit when its image is among the K most similar images. Ranks are computed as in
`levl_eval.metrics` (ties go to the lower index), so a collapsed encoder whose similarities all
tie scores chance rather than a perfect, tie-flattered recall.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from levl_eval.errors import EvalDataError
from levl_eval.featureset import FeatureSource
from levl_eval.protocols.base import EvalProtocol
from levl_eval.taskdata import RetrievalData

RECALL_AT: tuple[int, ...] = (1, 5, 10)


def rank_of(sim_QK: torch.Tensor, target_Q: torch.Tensor) -> torch.Tensor:
    """0-based rank of each query's target among its row (stable: ties to the lower index)."""
    target_sim_Q1 = sim_QK.gather(1, target_Q[:, None])
    index_K = torch.arange(sim_QK.shape[1])
    before_QK = (sim_QK > target_sim_Q1) | ((sim_QK == target_sim_Q1) & (index_K < target_Q[:, None]))
    return before_QK.sum(dim=1)


def best_target(sim_QK: torch.Tensor, correct_QK: torch.Tensor) -> torch.Tensor:
    """For each query, its best-scored correct item (the first one on ties)."""
    return sim_QK.masked_fill(~correct_QK, float("-inf")).argmax(dim=1)


def recalls(ranks_Q: torch.Tensor, prefix: str) -> dict[str, float]:
    return {f"{prefix}_r{k}": (ranks_Q < k).double().mean().item() for k in RECALL_AT}


def retrieval_ranks(
    image_NE: torch.Tensor, text_ME: torch.Tensor, image_of_text_M: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image→text ranks of the images that have a caption, text→image ranks [M]), in row chunks
    so N×M never sits in memory whole."""
    image_NE, text_ME = F.normalize(image_NE.float(), dim=-1), F.normalize(text_ME.float(), dim=-1)
    i2t = []
    for start in range(0, image_NE.shape[0], chunk):
        sim_QM = image_NE[start:start + chunk] @ text_ME.T
        correct_QM = image_of_text_M[None, :] == torch.arange(start, start + sim_QM.shape[0])[:, None]
        i2t.append(rank_of(sim_QM, best_target(sim_QM, correct_QM)))
    t2i = [rank_of(text_ME[start:start + chunk] @ image_NE.T, image_of_text_M[start:start + chunk])
           for start in range(0, text_ME.shape[0], chunk)]
    has_caption_N = torch.bincount(image_of_text_M, minlength=image_NE.shape[0]) > 0
    return torch.cat(i2t)[has_caption_N], torch.cat(t2i)


def retrieval_metrics(image_NE: torch.Tensor, text_ME: torch.Tensor, image_of_text_M: torch.Tensor) -> dict:
    """Recall@1/5/10 both ways and their mean (the usual "rsum / 6")."""
    i2t_N, t2i_M = retrieval_ranks(image_NE, text_ME, image_of_text_M)
    metrics = {**recalls(i2t_N, "i2t"), **recalls(t2i_M, "t2i")}
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics


class Retrieval(EvalProtocol):
    """Recall@K between every image of the split and every one of its captions."""

    name: ClassVar[str] = "retrieval"

    def settings(self) -> dict:
        return {
            "readout": "z_v vs z_t, both L2-normalised (cosine similarity)",
            "recall_at": list(RECALL_AT),
            "image_to_text": "hit when any of the image's captions is in the top K",
            "text_to_image": "hit when the caption's image is in the top K",
            "ties": "broken towards the lower index",
        }

    def run(self, encoder: FeatureSource, data: RetrievalData) -> dict:
        images = encoder.image_features(data.split)
        owners = [i for i, captions in enumerate(images.captions) for _ in captions]
        if images.num_samples == 0 or not owners:
            raise EvalDataError(f"split {data.split.name}: no image with a caption to retrieve")
        texts = tuple(text for captions in images.captions for text in captions)
        text = encoder.text_features(texts)
        metrics = retrieval_metrics(images.z_NE, text.z_ME, torch.tensor(owners))
        return {
            **metrics,
            "settings": self.settings(),
            "data": {"dataset": data.dataset, "images": images.num_samples, "captions": len(texts),
                     "skipped": dict(images.skipped)},
        }
