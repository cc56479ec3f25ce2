"""Learning parity with open_clip as a regression guard: levl-train (recipe clip_parity, which
draws open_clip's init) and open_clip's own trainer, same towers, photos, batch, steps and
AdamW, at bench/parity.py's --tiny size (~1.5 min for both), plus levl's InfoNCE as a user gets
it from `levl-train run small_custom --set objective.name=infonce` (levl's MLP heads with
BatchNorm, its light augmentation and clipping, the objective's init). A trainer change that
makes levl learn worse than open_clip (an init, a head, an augmentation, a schedule) fails it;
the full-size comparison and every difference between the trainers are in docs/parity.md."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import parity  # noqa: E402

from levl_data.photoset import make_photo_set  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    manifests = make_photo_set(work / "data", n_train=640, n_val=200,
                               image_size=parity.TINY.image_size)
    by_trainer = {r.trainer: r for r in parity.compare(parity.TINY, manifests["train"],
                                                       manifests["val"], work, seeds=[0])}
    defaults = dataclasses.replace(parity.TINY, recipe="small_custom",
                                   levl_sets=("optim.min_lr=0.0",))
    run = parity.run_levl(defaults, manifests["train"], work / "defaults", 0, 640)
    by_trainer["levl defaults"] = parity.Result(
        "levl defaults", 0, parity.levl_curve(run), parity.levl_held_out(run, manifests["val"]))
    print(parity.report(list(by_trainer.values()), parity.TINY))
    return by_trainer


def test_both_trainers_learn_on_the_photo_set(results):
    for result in results.values():
        assert result.late_loss < math.log(parity.TINY.batch) - 0.4, result


@pytest.mark.parametrize(("levl", "margin"), [("levl", 0.3), ("levl defaults", 0.3)])
def test_levl_loss_stays_within_open_clips_seed_spread(results, levl, margin):
    """Measured over 2 seeds at this size: open_clip's second-half loss varies by ~0.15;
    clip_parity (open_clip's init) ends 0.19 below it, levl's defaults (small_custom switched to
    InfoNCE) 0.05 above (their width-scaled init was 0.22 above: docs/parity.md), so the bound
    leaves room for another CPU."""
    assert results[levl].late_loss <= results["open_clip"].late_loss + margin


@pytest.mark.parametrize("levl", ["levl", "levl defaults"])
def test_levl_image_embeddings_do_not_collapse_where_open_clips_do_not(results, levl):
    """The tower init at 0.02 on these narrow towers halved the image embeddings' effective
    rank (4.6 vs open_clip's 7.6, against 9.9 with the width-scaled init)."""
    assert results[levl].held_out["erank_v"] >= 0.8 * results["open_clip"].held_out["erank_v"]
