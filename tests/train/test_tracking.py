"""`levl-train run` logs throughput, MFU and memory to metrics.jsonl, TensorBoard and W&B."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from levl_data.testing import make_tiny_shards
from levl_train.flops import train_flops_per_sample
from levl_train.recipes import micro_synthetic

PERF_KEYS = ("samples_per_s", "tokens_per_s", "text_tokens_per_sample", "step_time_s",
             "data_wait_s", "compute_s", "data_wait_frac", "flops_per_sample",
             "tflops_per_device", "mfu", "peak_mem_gib")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 6-step CPU run logging every 2 steps, W&B offline; its only checkpoint comes after
    the last log, so no logged interval holds a save."""
    root = tmp_path_factory.mktemp("tracking")
    shards = make_tiny_shards(root / "shards", n=48, image_size=32)
    out = root / "run"
    result = run_cli("levl-train", "run", "micro_synthetic", "--data", shards, "--out", out,
                     "--set", "steps=6", "--set", "log_every=2", "--set", "ckpt_every=6",
                     "--set", "data.batch_size=8", "--set", "log.wandb_project=levl-test",
                     env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, records


def test_metrics_hold_sane_throughput_fields(run):
    _, records = run
    assert [r["step"] for r in records] == [2, 4, 6]
    cfg = micro_synthetic()
    for record in records:
        assert set(PERF_KEYS) <= set(record)
        tokens = record["text_tokens_per_sample"]
        assert 2 <= tokens <= cfg.model.text.max_length  # at least one word and the EOS
        assert record["tokens_per_s"] > 0
        assert record["tokens_per_s"] == pytest.approx(record["samples_per_s"] * tokens)
        busy = record["data_wait_s"] + record["compute_s"]
        assert 0.5 * record["step_time_s"] <= busy <= record["step_time_s"]
        assert record["samples_per_s"] == pytest.approx(8 / busy)
        # per-sample FLOPs are quadratic in the caption length: at least f(mean), and close
        at_mean = train_flops_per_sample(cfg.model, 64, tokens)
        assert at_mean <= record["flops_per_sample"] <= 1.05 * at_mean
        assert record["mfu"] is None  # the CPU has no tensor-core peak
        assert record["tflops_per_device"] == pytest.approx(
            record["flops_per_sample"] * record["samples_per_s"] / 1e12)
        assert 0.1 < record["peak_mem_gib"] < 64


def test_tensorboard_event_file_holds_the_logged_scalars(run):
    out, records = run
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/sigreg_v", "train/erank_v", "train/lr", "perf/tokens_per_s",
            "perf/step_time_s", "perf/peak_mem_gib"} <= tags
    assert "perf/mfu" not in tags  # None on the CPU: left out, not logged as 0
    for tag, key in (("train/loss", "loss"), ("perf/tokens_per_s", "tokens_per_s")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [2, 4, 6]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)


def test_wandb_offline_run_is_written_into_the_run_dir(run):
    out, _ = run
    run_id = (out / "wandb_id").read_text().strip()
    (offline,) = (out / "wandb").glob(f"offline-run-*-{run_id}")
    assert list(offline.glob("*.wandb"))
