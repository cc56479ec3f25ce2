"""Retrieval recalls: perfect on identical embeddings, chance when shuffled or collapsed, and equal
to hand-computed ranks on a small case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from levl_eval.data.splits import EvalSplit
from levl_eval.features.types import SplitFeatures
from levl_eval.protocols.retrieval.data import RetrievalData
from levl_eval.protocols.retrieval.protocol import Retrieval, retrieval_metrics, retrieval_ranks
from levl_eval.testing.worlds import StaticFeatures

N, EMBED = 200, 32


def _source(image_NE: torch.Tensor, text_NE: torch.Tensor) -> StaticFeatures:
    captions = tuple((f"caption {i}",) for i in range(len(image_NE)))
    images = SplitFeatures(image_NE, image_NE, image_NE, torch.full((len(image_NE),), -1),
                           captions=captions)
    return StaticFeatures(images={"pairs": images},
                          captions={c[0]: (t, t) for c, t in zip(captions, text_NE, strict=True)})


def _run(image_NE: torch.Tensor, text_NE: torch.Tensor) -> dict:
    return Retrieval().run(_source(image_NE, text_NE), RetrievalData("toy", EvalSplit("pairs")))


def test_identical_image_and_text_embeddings_give_perfect_recall() -> None:
    z_NE = torch.randn(N, EMBED, generator=torch.Generator().manual_seed(0))
    result = _run(z_NE, 3.0 * z_NE)  # scale must not matter: cosine similarity
    assert result["i2t_r1"] == pytest.approx(1.0) and result["t2i_r1"] == pytest.approx(1.0)
    assert result["mean_recall"] == pytest.approx(1.0)
    assert result["data"] == {"dataset": "toy", "images": N, "captions": N, "skipped": {}}


def test_shuffled_pairing_gives_about_chance() -> None:
    generator = torch.Generator().manual_seed(1)
    z_NE = torch.randn(N, EMBED, generator=generator)
    result = _run(z_NE, z_NE[torch.randperm(N, generator=generator)])
    for direction in ("i2t", "t2i"):
        assert result[f"{direction}_r1"] < 0.03  # chance 1/200
        assert result[f"{direction}_r10"] < 0.12  # chance 10/200


def test_collapsed_embeddings_score_chance_not_ties() -> None:
    result = _run(torch.ones(N, EMBED), torch.ones(N, EMBED))
    assert result["i2t_r1"] == pytest.approx(1 / N) and result["t2i_r10"] == pytest.approx(10 / N)


def test_ranks_match_a_hand_computation() -> None:
    e0, e1, e2 = torch.eye(3)
    images_NE = torch.stack([e0, e1, e2])
    # captions 0, 1 describe image 0; caption 2 image 1; caption 3 image 2
    text_ME = F.normalize(torch.stack([e1, e0 + 0.5 * e2, e1 + e2, e0]), dim=-1)
    owner_M = torch.tensor([0, 0, 1, 2])
    i2t_N, t2i_M = retrieval_ranks(images_NE, text_ME, owner_M)
    # image 0: best own caption 1 (0.89) is beaten by caption 3 (1.0) -> rank 1
    # image 1: caption 2 (0.71) beaten by caption 0 (1.0) -> rank 1
    # image 2: caption 3 (0.0) beaten by captions 1, 2 and tied with the earlier caption 0 -> 3
    assert i2t_N.tolist() == [1, 1, 3]
    # caption 0 -> image 1 first; caption 2 ties images 1 and 2 (its own, image 1, is earlier);
    # caption 3 -> image 0 first, image 1 ties and is earlier than image 2
    assert t2i_M.tolist() == [1, 0, 0, 2]
    metrics = retrieval_metrics(images_NE, text_ME, owner_M)
    assert (metrics["i2t_r1"], metrics["i2t_r5"]) == (0.0, 1.0)
    assert (metrics["t2i_r1"], metrics["t2i_r5"]) == (0.5, 1.0)
    assert metrics["mean_recall"] == pytest.approx((0 + 1 + 1 + 0.5 + 1 + 1) / 6)


def test_chunking_does_not_change_ranks() -> None:
    generator = torch.Generator().manual_seed(2)
    image_NE, text_ME = torch.randn(50, 8, generator=generator), torch.randn(120, 8, generator=generator)
    owner_M = torch.randint(0, 50, (120,), generator=generator)
    whole = retrieval_ranks(image_NE, text_ME, owner_M)
    chunked = retrieval_ranks(image_NE, text_ME, owner_M, chunk=7)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked, strict=True))


def _run_readouts(z_v: torch.Tensor, pred_v: torch.Tensor, z_t: torch.Tensor,
                  pred_t: torch.Tensor) -> dict:
    captions = tuple((f"caption {i}",) for i in range(len(z_v)))
    images = SplitFeatures(z_v, z_v, pred_v, torch.full((len(z_v),), -1), captions=captions)
    source = StaticFeatures(images={"pairs": images},
                            captions={c[0]: (z, p) for c, z, p in zip(captions, z_t, pred_t, strict=True)})
    return Retrieval().run(source, RetrievalData("toy", EvalSplit("pairs")))


def test_alignment_through_the_predictor_is_found_by_its_readouts() -> None:
    """LeVLJEPA aligns through its predictors: z_v and z_t unrelated, pred_v(z_v) ≈ z_t."""
    generator = torch.Generator().manual_seed(3)
    z_v, z_t = torch.randn(N, EMBED, generator=generator), torch.randn(N, EMBED, generator=generator)
    pred_v = z_t + 0.3 * torch.randn(N, EMBED, generator=generator)
    pred_t = torch.randn(N, EMBED, generator=generator)
    result = _run_readouts(z_v, pred_v, z_t, pred_t)
    readouts = result["readouts"]
    assert readouts["zv_zt"]["i2t_r10"] < 0.12 and readouts["zv_predt"]["i2t_r10"] < 0.12
    assert readouts["predv_zt"]["i2t_r1"] > 0.95
    assert result["readout"] == "average" and result["i2t_r1"] == readouts["average"]["i2t_r1"]
    assert result["i2t_r10"] > 0.5  # the average still carries the predictor's alignment


def test_average_readout_matches_an_explicit_mean_of_cosine_matrices() -> None:
    generator = torch.Generator().manual_seed(4)
    z_v, pred_v, z_t, pred_t = (torch.randn(40, 6, generator=generator, dtype=torch.float64)
                                for _ in range(4))
    pred_v = pred_v + z_t  # some signal so the recalls are not all near zero

    def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T

    sim = (cos(z_v, z_t) + cos(pred_v, z_t) + cos(z_v, pred_t)) / 3
    own = sim.diagonal()
    i2t_r1 = float(((sim > own[:, None]).sum(1) == 0).double().mean())
    sim_text_image = sim.T
    t2i_r5 = float(((sim_text_image > own[:, None]).sum(1) < 5).double().mean())
    result = _run_readouts(z_v, pred_v, z_t, pred_t)
    assert result["i2t_r1"] == pytest.approx(i2t_r1) and result["t2i_r5"] == pytest.approx(t2i_r5)
    assert 0.0 < i2t_r1 < 1.0


def test_an_encoder_without_predictors_is_read_out_through_z_alone() -> None:
    """A contrastive encoder has no predictor: its only readout is z_v·z_t, which is then its
    headline "average" (no random predictor averaged in)."""
    generator = torch.Generator().manual_seed(5)
    z_v = torch.randn(N, EMBED, generator=generator)
    z_t = z_v + 0.5 * torch.randn(N, EMBED, generator=generator)
    captions = tuple((f"caption {i}",) for i in range(N))
    images = SplitFeatures(z_v, z_v, None, torch.full((N,), -1), captions=captions)
    source = StaticFeatures(images={"pairs": images},
                            captions={c[0]: (z, None) for c, z in zip(captions, z_t, strict=True)})
    result = Retrieval().run(source, RetrievalData("toy", EvalSplit("pairs")))
    assert set(result["readouts"]) == {"zv_zt", "average"}
    assert result["readouts"]["average"] == result["readouts"]["zv_zt"]
    assert result["i2t_r1"] == retrieval_metrics(z_v, z_t, torch.arange(N))["i2t_r1"] > 0.5
