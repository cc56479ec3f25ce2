"""Model FLOPs per sample, the device peak table, MFU, and the interval meter's arithmetic."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from levl_model.model import build_model
from levl_train.flops import (
    device_peak_flops,
    heads_forward_flops,
    peak_flops_for,
    text_forward_flops,
    train_flops_per_sample,
    vision_forward_flops,
)
from levl_train.recipes import micro_synthetic
from levl_train.throughput import ThroughputMeter, interval_figures


def test_flops_per_sample_matches_a_hand_count_for_the_micro_model():
    """micro_synthetic: width 64, depth 2, 64-px images in 8-px patches, E=64, heads 256 wide."""
    cfg = micro_synthetic()
    patch_embed = 2 * 64 * (3 * 8 * 8 * 64)  # 64 patches, a 192 -> 64 linear each
    vit_block = 2 * 65 * 12 * 64**2 + 4 * 65**2 * 64  # 65 tokens: qkv+proj+mlp, QK^T and AV
    gpt2_block = 2 * 5 * 12 * 64**2 + 4 * 5**2 * 64  # 5 real caption tokens
    projections = 2 * 2 * (64 * 256 + 256 * 64)
    predictors = 2 * 2 * (64 * 256 + 3 * 256 * 256 + 256 * 64)
    forward = patch_embed + 2 * vit_block + 2 * gpt2_block + projections + predictors
    assert forward == 18_560_000
    assert train_flops_per_sample(cfg.model, 64, 5) == 3 * forward


def test_forward_flops_equal_torchs_flop_counter_on_the_real_model():
    """An independent count: torch's FlopCounterMode over the micro model's actual forward
    (math attention, so QK^T and AV are visible to it as bmm)."""
    cfg = micro_synthetic()
    model = build_model(cfg.model, seed=0).train()
    batch, tokens = 4, 7
    images = torch.randn(batch, 3, 64, 64)
    input_ids = torch.randint(0, 50_000, (batch, tokens))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images, input_ids, torch.ones(batch, tokens, dtype=torch.long))
    ours = batch * (vision_forward_flops(cfg.model.vision, 64) + heads_forward_flops(cfg.model)
                    + text_forward_flops(cfg.model.text, tokens))
    assert counter.get_total_flops() == ours


@pytest.mark.parametrize("projection", ["mlp", "linear"])
def test_a_contrastive_models_forward_flops_equal_torchs_flop_counter(projection):
    """A contrastive baseline has no predictors, and CLIP's linear projection has no hidden
    layer: neither may be counted as work the step does."""
    cfg = micro_synthetic().model
    cfg = dataclasses.replace(cfg, heads=dataclasses.replace(
        cfg.heads, predictors=False, projection=projection))
    model = build_model(cfg, seed=0).train()
    batch, tokens = 4, 7
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, 3, 64, 64), torch.randint(0, 50_000, (batch, tokens)),
              torch.ones(batch, tokens, dtype=torch.long))
    ours = batch * (vision_forward_flops(cfg.vision, 64) + heads_forward_flops(cfg)
                    + text_forward_flops(cfg.text, tokens))
    assert counter.get_total_flops() == ours


def test_forward_flops_of_two_views_equal_torchs_flop_counter():
    """data.views=2: the model encodes both views of each image and each caption once."""
    cfg = micro_synthetic()
    model = build_model(cfg.model, seed=0).train()
    batch, tokens = 4, 7
    images = torch.randn(batch * 2, 3, 64, 64)
    input_ids = torch.randint(0, 50_000, (batch, tokens))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images, input_ids, torch.ones(batch, tokens, dtype=torch.long))
    per_sample = train_flops_per_sample(cfg.model, 64, tokens, views=2) / 3
    assert counter.get_total_flops() == batch * per_sample


def test_forward_flops_with_local_views_equal_torchs_flop_counter():
    """data.local_views=3 at 32 px: three more, smaller passes through the ViT and the image
    projection, and no predictor pass."""
    cfg = micro_synthetic()
    model = build_model(cfg.model, seed=0).train()
    batch, tokens = 4, 7
    input_ids = torch.randint(0, 50_000, (batch, tokens))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(batch * 2, 3, 64, 64), input_ids,
              torch.ones(batch, tokens, dtype=torch.long), torch.randn(batch * 3, 3, 32, 32))
    per_sample = train_flops_per_sample(cfg.model, 64, tokens, views=2, local=(3, 32)) / 3
    assert counter.get_total_flops() == batch * per_sample


def test_text_flops_of_a_length_tensor_are_the_per_sample_values():
    cfg = micro_synthetic().model
    lengths = torch.tensor([3.0, 9.0, 17.0], dtype=torch.float64)
    batch = train_flops_per_sample(cfg, 64, lengths)
    assert batch.tolist() == [train_flops_per_sample(cfg, 64, n) for n in (3, 9, 17)]


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.5),
    ("NVIDIA H200", 989.4), ("NVIDIA GH200 480GB", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.05), ("NVIDIA L4", 121.0),
    ("NVIDIA A10", 125.0), ("NVIDIA GeForce GTX 1080", None), ("Tesla V100-SXM2-16GB", None),
])
def test_peak_table_matches_device_names(name, tflops):
    peak = peak_flops_for(name)
    assert peak == (None if tflops is None else pytest.approx(tflops * 1e12))


def test_peak_is_none_on_the_cpu_even_with_an_override():
    assert device_peak_flops(torch.device("cpu"), None) is None
    assert device_peak_flops(torch.device("cpu"), 100.0) is None


def test_mfu_for_a_faked_h100_is_model_flops_over_time_over_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    meter = ThroughputMeter(micro_synthetic(), torch.device("cuda", 0))
    assert meter.peak_flops == pytest.approx(756e12)
    # 2 GPUs, 10 steps of 0.1 s data + 0.4 s compute, 2e15 model FLOPs in all.
    figures = interval_figures(samples=640, tokens=6400, flops=2e15, data_s=1.0, compute_s=4.0,
                               wall_s=5.5, steps=10, devices=2, peak_flops=meter.peak_flops,
                               peak_bytes=2 * 1024**3)
    assert figures["mfu"] == pytest.approx(2e15 / 5.0 / 2 / 756e12)
    assert figures["tflops_per_device"] == pytest.approx(200.0)
    assert figures["samples_per_s"] == pytest.approx(128.0)
    assert figures["step_time_s"] == pytest.approx(0.55)
    assert figures["peak_mem_gib"] == pytest.approx(2.0)
    overridden = device_peak_flops(torch.device("cuda", 0), 500.0)
    assert overridden == pytest.approx(500e12)


def test_cpu_meter_splits_time_and_counts_tokens_and_flops():
    cfg = micro_synthetic()
    meter = ThroughputMeter(cfg, torch.device("cpu"))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    for _ in range(2):
        meter.wait_for(lambda: (time.sleep(0.02), meter.count_text(mask)))
        meter.compute(time.sleep, 0.05)
    figures = meter.interval()
    assert figures["text_tokens_per_sample"] == pytest.approx(4.0)
    assert figures["tokens_per_s"] == pytest.approx(
        figures["samples_per_s"] * figures["text_tokens_per_sample"])
    assert figures["flops_per_sample"] == pytest.approx(
        (train_flops_per_sample(cfg.model, 64, 3) + train_flops_per_sample(cfg.model, 64, 5)) / 2)
    assert 0.02 <= figures["data_wait_s"] < 0.5 and 0.05 <= figures["compute_s"] < 0.5
    assert figures["data_wait_s"] + figures["compute_s"] <= figures["step_time_s"]
    assert figures["mfu"] is None and figures["peak_mem_gib"] > 0.05
    assert meter.interval()["samples_per_s"] == 0.0  # the interval starts anew


@pytest.mark.parametrize(("precision", "float32_matmul", "tflops"), [
    ("bf16", "highest", 989.4),  # autocast: bf16 tensor cores
    ("fp32", "highest", 67.0),  # torch's default fp32 matmul: CUDA cores, no TF32
    ("fp32", "high", 494.7),  # TF32 allowed: half the bf16 tensor-core rate
])
def test_mfu_peak_follows_the_runs_matmul_precision(monkeypatch, precision, float32_matmul,
                                                    tflops):
    """An fp32 run on an H100 SXM measured against the bf16 peak would under-report its MFU
    by 15x (or 2x with TF32)."""
    monkeypatch.setattr(torch.cuda, "get_device_name",
                        lambda device=None: "NVIDIA H100 80GB HBM3")
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(float32_matmul)
    try:
        cfg = dataclasses.replace(micro_synthetic(), precision=precision)
        meter = ThroughputMeter(cfg, torch.device("cuda", 0))
    finally:
        torch.set_float32_matmul_precision(previous)
    assert meter.peak_flops == pytest.approx(tflops * 1e12)


def test_fp32_peaks_are_known_where_bf16_ones_are_except_b200():
    for name in ("NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA H200"):
        assert peak_flops_for(name, "fp32") < peak_flops_for(name, "tf32") < peak_flops_for(name)
    assert peak_flops_for("NVIDIA B200", "fp32") is None  # MFU null: set log.peak_tflops
