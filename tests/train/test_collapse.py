"""Collapse is visible: an effective rank that stays below the threshold for collapse_steps is
flagged in metrics.jsonl, on the progress bar and in `levl-train status`, naming the dominant
loss term; a healthy run is never flagged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from levl_data.testing import make_tiny_shards
from levl_train.collapse import CollapseWatch, weighted_terms
from levl_train.recipes import micro_synthetic


def _record(erank_v: float, erank_t: float) -> dict:
    return {"erank_v": erank_v, "erank_t": erank_t}


def test_a_rank_that_stays_low_for_the_patience_is_flagged_with_the_dominant_term():
    watch = CollapseWatch(threshold=4.0, patience=20)
    terms = {"pred": 0.9, "sigreg_v": 0.02, "sigreg_t": 0.3}
    assert watch.update(10, _record(3.0, 30.0), terms) is None  # low, but only just
    assert watch.update(20, _record(3.5, 30.0), terms) is None
    flagged = watch.update(30, _record(2.0, 30.0), terms)
    assert flagged == {"embeddings": ["z_v"], "since_step": 10, "threshold": 4.0,
                       "driver": "pred"}


def test_a_rank_that_recovers_restarts_the_count():
    watch = CollapseWatch(threshold=4.0, patience=20)
    terms = {"infonce": 4.1}
    watch.update(10, _record(3.0, 3.0), terms)
    watch.update(20, _record(9.0, 3.0), terms)  # z_v recovers, z_t does not
    flagged = watch.update(30, _record(3.0, 3.0), terms)
    assert flagged["embeddings"] == ["z_t"] and flagged["since_step"] == 10
    assert watch.update(40, _record(3.0, 9.0), terms) is None  # z_v low for 10 steps only


def test_weighted_terms_weigh_levljepa_terms_by_lambda_and_name_a_contrastive_loss():
    cfg = micro_synthetic()
    terms = weighted_terms(cfg, {"loss": 1.0, "pred": 1.0, "sigreg_v": 10.0, "sigreg_t": 1.0})
    assert terms == pytest.approx({"pred": 0.96, "sigreg_v": 0.2, "sigreg_t": 0.02})
    infonce = dataclasses.replace(cfg, objective=dataclasses.replace(cfg.objective,
                                                                     name="infonce"))
    assert weighted_terms(infonce, {"loss": 4.1}) == {"infonce": 4.1}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tiny_shards(tmp_path_factory.mktemp("shards"), n=48, image_size=32)


def _run(cli, shards, out, *sets):
    args = [arg for item in ("steps=6", "log_every=2", "ckpt_every=6", "data.batch_size=8",
                             *sets) for arg in ("--set", item)]
    result = cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_flagged_run_shows_it_in_metrics_and_status(cli, shards, tmp_path):
    """A threshold at the rank's ceiling (fraction 1) flags any run: the plumbing, end to end."""
    records = _run(cli, shards, tmp_path / "run", "log.collapse_fraction=1.0",
                   "log.collapse_steps=2")
    assert "collapse" not in records[0]  # step 2: below since step 2, not for 2 steps yet
    assert records[-1]["collapse"]["embeddings"] == ["z_t", "z_v"]
    assert records[-1]["collapse"]["driver"] in {"pred", "sigreg_v", "sigreg_t"}
    status = cli("levl-train", "status", tmp_path / "run")
    assert status.returncode == 0, status.stderr
    assert "COLLAPSE   z_t+z_v effective rank < 8 since step 2" in status.stdout, status.stdout


def test_a_healthy_run_is_not_flagged(cli, shards, tmp_path):
    records = _run(cli, shards, tmp_path / "run")
    assert all("collapse" not in record for record in records)
    assert "COLLAPSE" not in cli("levl-train", "status", tmp_path / "run").stdout
