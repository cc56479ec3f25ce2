"""Image↔text retrieval Recall@K (METHOD.md, "Retrieval", beyond the paper).

Similarity = cosine similarity, read out four ways as zero-shot does (a LeVLJEPA model aligns its
modalities through its predictors, so z_v·z_t alone misses its alignment): z_v·z_t,
pred_v(z_v)·z_t, z_v·pred_t(z_t), and the mean of the three cosine matrices (the headline, as in
zero-shot). Image→text: an image scores a hit at K
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
from levl_eval.features.types import FeatureSource
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.retrieval.data import RetrievalData
from levl_eval.protocols.zeroshot.protocol import HEADLINE_READOUT, READOUT_DESCRIPTIONS

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


# (image, text) embedding pairs whose cosine-similarity matrices are averaged into one readout
Pairs = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def _similarity(pairs: Pairs, rows: slice, *, text_rows: bool = False) -> torch.Tensor:
    """Mean cosine similarity of a block of rows (images, or texts with text_rows) with all of
    the other side; inputs are already L2-normalised."""
    blocks = [(text[rows] @ image.T) if text_rows else (image[rows] @ text.T)
              for image, text in pairs]
    return torch.stack(blocks).mean(dim=0)


def readout_ranks(pairs: Pairs, image_of_text_M: torch.Tensor, chunk: int = 1024
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(image→text ranks of the images that have a caption, text→image ranks [M]) under the mean
    cosine of `pairs`, in row chunks so N×M never sits in memory whole."""
    pairs = tuple((F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1))
                  for image, text in pairs)
    num_images, num_texts = pairs[0][0].shape[0], pairs[0][1].shape[0]
    i2t = []
    for start in range(0, num_images, chunk):
        sim_QM = _similarity(pairs, slice(start, start + chunk))
        correct_QM = image_of_text_M[None, :] == torch.arange(start, start + sim_QM.shape[0])[:, None]
        i2t.append(rank_of(sim_QM, best_target(sim_QM, correct_QM)))
    t2i = [rank_of(_similarity(pairs, slice(start, start + chunk), text_rows=True),
                   image_of_text_M[start:start + chunk])
           for start in range(0, num_texts, chunk)]
    has_caption_N = torch.bincount(image_of_text_M, minlength=num_images) > 0
    return torch.cat(i2t)[has_caption_N], torch.cat(t2i)


def retrieval_ranks(image_NE: torch.Tensor, text_ME: torch.Tensor, image_of_text_M: torch.Tensor,
                    chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks under the cosine of one image and one text embedding."""
    return readout_ranks(((image_NE, text_ME),), image_of_text_M, chunk)


def recall_metrics(ranks: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Recall@1/5/10 both ways and their mean (the usual "rsum / 6")."""
    i2t_N, t2i_M = ranks
    metrics = {**recalls(i2t_N, "i2t"), **recalls(t2i_M, "t2i")}
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics


def retrieval_metrics(image_NE: torch.Tensor, text_ME: torch.Tensor, image_of_text_M: torch.Tensor) -> dict:
    """Recall@1/5/10 both ways and their mean under z_v·z_t-style cosine of two embeddings."""
    return recall_metrics(retrieval_ranks(image_NE, text_ME, image_of_text_M))


def readout_pairs(z_v: torch.Tensor, pred_v: torch.Tensor | None, z_t: torch.Tensor,
                  pred_t: torch.Tensor | None) -> dict[str, Pairs]:
    """The zero-shot readouts, as (image, text) pairs: one pair each, all of them for the
    average (z_v·z_t alone for an encoder without predictors)."""
    single = {"zv_zt": ((z_v, z_t),)}
    if pred_v is not None and pred_t is not None:
        single |= {"predv_zt": ((pred_v, z_t),), "zv_predt": ((z_v, pred_t),)}
    return {**single, "average": tuple(pair for pairs in single.values() for pair in pairs)}


class Retrieval(EvalProtocol):
    """Recall@K between every image of the split and every one of its captions."""

    name: ClassVar[str] = "retrieval"

    def settings(self) -> dict:
        return {
            "readouts": dict(READOUT_DESCRIPTIONS),
            "headline_readout": HEADLINE_READOUT,
            "similarity": "cosine (both sides L2-normalised)",
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
        owner_M = torch.tensor(owners)
        pairs = readout_pairs(images.z_NE, images.pred_NE, text.z_ME, text.pred_ME)
        readouts = {name: recall_metrics(readout_ranks(readout, owner_M))
                    for name, readout in pairs.items()}
        return {
            **readouts[HEADLINE_READOUT],
            "readout": HEADLINE_READOUT,
            "readouts": readouts,
            "settings": self.settings(),
            "data": {"dataset": data.dataset, "images": images.num_samples, "captions": len(texts),
                     "skipped": dict(images.skipped)},
        }
