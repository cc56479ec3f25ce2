"""The engines' step on the micro model: activation checkpointing, gradient accumulation under
both engines, the CPU precision rule and clipping switched off.

Gradient accumulation is exactly comparable with one big batch only where the loss is a mean of
per-sample terms: BatchNorm's batch statistics and SIGReg's characteristic function are per
micro-batch (as under DeepSpeed). So the accumulation tests train the prediction loss alone
(use_sigreg=false) with the heads' BatchNorms in eval mode; there accum=2 of B must match one
batch of 2B up to float rounding, in the loss, the gradient norm and the updated weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from levl_train.config import with_objective_model
from levl_train.distributed import DistEnv, backend_for
from levl_train.engine import TorchEngine, uses_bf16
from levl_train.errors import TrainError
from levl_train.recipes import micro_synthetic
from levl_train.setup import build_module

MICRO, CAPTION = 4, 6
CPU = torch.device("cpu")


def micro_cfg(**changes):
    """The prediction loss alone, clipped low enough (its gradient norm is ~0.04) that the
    clipping acts on the accumulated gradient."""
    cfg = micro_synthetic()
    objective = dataclasses.replace(cfg.objective, use_sigreg=False)
    optim = dataclasses.replace(cfg.optim, grad_clip=0.01)
    return dataclasses.replace(cfg, **{"objective": objective, "optim": optim, **changes})


def micro_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(MICRO, 3, 64, 64, generator=generator),
            torch.randint(0, 50_000, (MICRO, CAPTION), generator=generator),
            torch.ones(MICRO, CAPTION, dtype=torch.long))


def concatenated(*batches):
    return tuple(torch.cat(parts) for parts in zip(*batches, strict=True))


def flat_params(module) -> torch.Tensor:
    return torch.cat([p.detach().ravel() for p in module.parameters()])


def per_sample_module(cfg):
    """The micro TrainModule with its BatchNorms on running statistics: a per-sample loss."""
    return build_module(cfg, DistEnv(), CPU).eval()


def count_block_starts(module) -> list[int]:
    """Live counts of how often each ViT and GPT-2 block's forward starts (its first layer)."""
    first_layers = [*(block.norm1 for block in module.model.vision.blocks),
                    *(block.ln_1 for block in module.model.text.transformer.h)]
    calls = [0] * len(first_layers)

    def counter(index: int):
        def count(*_):
            calls[index] += 1
        return count

    for index, layer in enumerate(first_layers):
        layer.register_forward_pre_hook(counter(index))
    return calls


def test_activation_checkpointing_recomputes_every_block_and_keeps_loss_and_grads():
    """The switch reaches both towers (each block's forward starts again in backward) and is
    numerically a no-op. Counted on each block's first layer: transformers checkpoints a GPT-2
    block's `forward` inside its hooks, and the recompute stops as soon as it has what backward
    needs, before the block returns, so hooks on the block itself see one call either way."""
    results = {}
    for checkpointing in (False, True):
        cfg = micro_synthetic()
        cfg = dataclasses.replace(cfg, dist=dataclasses.replace(
            cfg.dist, activation_checkpointing=checkpointing))
        module = build_module(cfg, DistEnv(), CPU)
        calls = count_block_starts(module)
        terms, _ = module(*micro_batch(0), step=3)
        terms["loss"].backward()
        grads = torch.cat([p.grad.ravel() for p in module.parameters() if p.grad is not None])
        results[checkpointing] = (terms["loss"].detach(), grads, calls)
    (loss, grads, calls), (ckpt_loss, ckpt_grads, ckpt_calls) = results[False], results[True]
    assert calls == [1] * len(calls) and ckpt_calls == [2] * len(calls)
    torch.testing.assert_close(ckpt_loss, loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(ckpt_grads, grads, rtol=1e-5, atol=1e-8)


def full_batch_reference(cfg):
    """The torch engine's step on one batch of 2 x MICRO: (loss, grad norm, weights after)."""
    engine = TorchEngine(per_sample_module(cfg), cfg)
    out = engine.step([concatenated(micro_batch(1), micro_batch(2))], step=0)
    return float(out.terms["loss"]), float(out.grad_norm), flat_params(engine.module)


def assert_same_step(loss, grad_norm, weights, reference):
    ref_loss, ref_norm, ref_weights = reference
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grad_norm == pytest.approx(ref_norm, rel=1e-5)  # a sum instead of a mean doubles it
    assert grad_norm > micro_cfg().optim.grad_clip  # so clipping acted on the accumulated grad
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-7)


def test_torch_engine_accumulating_two_micro_batches_equals_one_batch_of_both():
    cfg = micro_cfg(dist=dataclasses.replace(micro_cfg().dist, grad_accum=2))
    engine = TorchEngine(per_sample_module(cfg), cfg)
    out = engine.step([micro_batch(1), micro_batch(2)], step=0)
    assert_same_step(float(out.terms["loss"]), float(out.grad_norm), flat_params(engine.module),
                     full_batch_reference(micro_cfg()))


def _accumulating_steps(out_dir: str) -> dict:
    """ZeRO 0 and 2 with grad_accum=2 over the two micro-batches, on one DeepSpeed rank."""
    from levl_train.ds_engine import DeepSpeedEngine

    results = {}
    for stage in (0, 2):
        base = micro_cfg()
        cfg = micro_cfg(engine="deepspeed", dist=dataclasses.replace(
            base.dist, zero_stage=stage, grad_accum=2))
        engine = DeepSpeedEngine(per_sample_module(cfg), cfg, micro_batch=MICRO, world_size=1)
        out = engine.step([micro_batch(1), micro_batch(2)], step=0)
        torch.save(flat_params(engine.module), f"{out_dir}/weights_zero{stage}.pt")
        results[stage] = [float(out.terms["loss"]), float(out.grad_norm)]
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_rank(rank: int, port: int, out_dir: str, body) -> None:
    from levl_train.distributed import init_process_group, shutdown

    torch.set_num_threads(1)
    init_process_group(DistEnv(master_port=port), "gloo", 60)
    try:
        results = body(out_dir)
    finally:
        shutdown()
    with open(f"{out_dir}/results.json", "w") as f:
        json.dump(results, f)


def on_one_deepspeed_rank(body, tmp_path) -> dict:
    """`body(out_dir)` in one forked gloo rank (DeepSpeed needs a process group, and forking
    spares the child torch's imports); returns the JSON of what it returned."""
    mp.start_processes(_one_rank, args=(free_port(), str(tmp_path), body), nprocs=1,
                       start_method="fork")
    return json.loads((tmp_path / "results.json").read_text())


def test_deepspeed_accumulating_two_micro_batches_equals_one_batch_of_both(tmp_path):
    """DeepSpeed scales each micro-batch's loss by 1/grad_accum and steps at the boundary: the
    same step as the torch engine on the whole batch, under ZeRO 0 and ZeRO 2."""
    results = on_one_deepspeed_rank(_accumulating_steps, tmp_path)
    reference = full_batch_reference(micro_cfg())
    for stage in (0, 2):
        loss, grad_norm = results[str(stage)]
        weights = torch.load(tmp_path / f"weights_zero{stage}.pt", weights_only=True)
        assert_same_step(loss, grad_norm, weights, reference)


def test_the_cpu_trains_in_fp32_unless_bf16_is_asked_for():
    cfg = micro_synthetic()
    assert cfg.precision == "bf16" and not uses_bf16(cfg, CPU)
    assert uses_bf16(cfg, torch.device("cuda", 0))
    asked = dataclasses.replace(cfg, cpu_bf16=True)
    assert uses_bf16(asked, CPU)
    assert not uses_bf16(dataclasses.replace(cfg, precision="fp32"), torch.device("cuda", 0))
    dtypes = {}
    for name, run_cfg in (("default", cfg), ("asked", asked)):
        engine = TorchEngine(build_module(run_cfg, DistEnv(), CPU), run_cfg)
        out = engine.step([micro_batch(0)], step=0)
        dtypes[name] = out.embeddings["pred_v"].dtype  # a Linear's output: autocast's dtype
        assert torch.isfinite(out.terms["loss"]) and out.grad_norm > 0
        assert {p.dtype for p in engine.module.parameters()} == {torch.float32}  # fp32 master
    assert dtypes == {"default": torch.float32, "asked": torch.bfloat16}


def test_grad_clip_zero_turns_clipping_off_instead_of_zeroing_the_update():
    cfg = micro_cfg(optim=dataclasses.replace(micro_cfg().optim, grad_clip=0.0))
    engine = TorchEngine(per_sample_module(cfg), cfg)
    before = flat_params(engine.module)
    out = engine.step([micro_batch(1)], step=0)
    assert out.grad_norm > 0.0
    moved = (flat_params(engine.module) - before).abs()
    assert moved.max() > 0.5 * engine.optimizer.param_groups[0]["lr"]


def test_backend_is_nccl_on_gpus_and_gloo_on_the_cpu():
    assert backend_for(torch.device("cuda", 0), "auto") == "nccl"
    assert backend_for(CPU, "auto") == "gloo"
    assert backend_for(torch.device("cuda", 0), "gloo") == "gloo"
    with pytest.raises(TrainError, match="dist.backend=nccl needs CUDA"):
        backend_for(CPU, "nccl")


def infonce_cfg(**changes):
    cfg = micro_synthetic()
    return with_objective_model(dataclasses.replace(
        cfg, objective=dataclasses.replace(cfg.objective, name="infonce"), **changes))


def push_scale_up(module, value: float = 5.0) -> None:
    """A logit scale above ln 100 with a gradient pushing it further up: the drift the forward
    clamp used to hide."""
    with torch.no_grad():
        module.objective.logit_scale.fill_(value)


def test_torch_engine_clamps_the_logit_scale_after_the_step_as_open_clip():
    cfg = infonce_cfg()
    engine = TorchEngine(build_module(cfg, DistEnv(), CPU), cfg)
    push_scale_up(engine.module)
    engine.step([micro_batch(0)], step=3)
    assert engine.module.objective.logit_scale.item() == pytest.approx(math.log(100), abs=1e-7)
    with torch.no_grad():
        engine.module.objective.logit_scale.fill_(-0.5)
    engine.step([micro_batch(1)], step=4)
    assert engine.module.objective.logit_scale.item() == 0.0


def _clamped_scales(out_dir: str) -> dict:
    """On one DeepSpeed rank: after a step the logit scale is clamped in the module and in
    ZeRO's fp32 master copy, under stages 0, 2 and 3."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    from levl_train.ds_engine import DeepSpeedEngine

    results = {}
    for stage in (0, 2, 3):
        cfg = infonce_cfg(engine="deepspeed", dist=dataclasses.replace(
            micro_synthetic().dist, zero_stage=stage))
        engine = DeepSpeedEngine(build_module(cfg, DistEnv(), CPU), cfg, micro_batch=MICRO,
                                 world_size=1)
        scale = engine.module.objective.logit_scale
        with engine._gathered([scale]):
            push_scale_up(engine.module)
        master = safe_get_full_fp32_param(scale)
        if master is not None:  # ZeRO's copy too, as if a step had left it there
            safe_set_full_fp32_param(scale, torch.full_like(master, 5.0))
        engine.step([micro_batch(0)], step=3)
        master = safe_get_full_fp32_param(scale)
        with engine._gathered([scale]):
            working = scale.item()
        results[stage] = [working, None if master is None else master.item()]
    return results


def test_deepspeed_clamps_the_logit_scale_in_the_module_and_in_zero_master_weights(tmp_path):
    results = on_one_deepspeed_rank(_clamped_scales, tmp_path)
    cap = pytest.approx(math.log(100), abs=1e-6)
    assert results["0"] == [cap, None]  # no ZeRO: the module's parameter is the only copy
    assert results["2"] == [cap, cap] and results["3"] == [cap, cap]


def _bf16_steps(out_dir: str) -> dict:
    """On one DeepSpeed rank with bf16 (cpu_bf16 on this CPU): DeepSpeed's torch_autocast runs
    the forward in bf16 and marks the matmul weights for bf16 reduction, the weights stay fp32,
    and the checkpoint's tensors are ZeRO's fp32 master weights, bitwise."""
    from deepspeed.utils import safe_get_full_fp32_param

    from levl_model.checkpoint import checkpoint_tensors
    from levl_train.ds_engine import DeepSpeedEngine

    results = {}
    for stage in (2, 3):
        cfg = micro_synthetic()
        cfg = dataclasses.replace(cfg, engine="deepspeed", cpu_bf16=True,
                                  dist=dataclasses.replace(cfg.dist, zero_stage=stage))
        engine = DeepSpeedEngine(build_module(cfg, DistEnv(), CPU), cfg, micro_batch=MICRO,
                                 world_size=1)
        out = [engine.step([micro_batch(seed)], step=seed) for seed in range(2)][-1]
        module = engine.module
        masters = {name.removeprefix("model."): safe_get_full_fp32_param(p)
                   for name, p in module.named_parameters()}
        with engine.full_weights():
            saved = checkpoint_tensors(module.model, module.objective)
        results[stage] = {
            "embedding_dtype": str(out.embeddings["pred_v"].dtype),
            "weight_dtypes": sorted({str(p.dtype) for p in module.parameters()}),
            "bf16_reduced": sorted({type(m).__name__ for m in module.modules()
                                    if any(getattr(p, "comm_dtype", None) == torch.bfloat16
                                           for p in m.parameters(recurse=False))}),
            "saved_dtypes": sorted({str(t.dtype) for t in saved.values()}),
            "masters_equal_saved": all(torch.equal(saved[name], master.reshape(saved[name].shape))
                                       for name, master in masters.items()),
            "masters": len(masters),
        }
    return results


def test_deepspeed_bf16_autocasts_reduces_matmul_grads_in_bf16_and_saves_fp32_masters(tmp_path):
    results = on_one_deepspeed_rank(_bf16_steps, tmp_path)
    for stage in ("2", "3"):
        result = results[stage]
        assert result["embedding_dtype"] == "torch.bfloat16"  # the forward ran under autocast
        assert result["weight_dtypes"] == ["torch.float32"]
        assert {"Linear", "Conv2d", "Conv1D", "Embedding"} <= set(result["bf16_reduced"])
        assert "BatchNorm1d" not in result["bf16_reduced"]
        assert result["saved_dtypes"] == ["torch.float32", "torch.int64"]  # + BN's counter
        assert result["masters"] > 20 and result["masters_equal_saved"]


HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__")


def forbid_host_reads(monkeypatch, allowed: tuple[str, ...] = ("/torch/optim/",)) -> list[str]:
    """Make every tensor-to-host read (`.item()`, `float(t)`, `if t:`, ...) in the step fail the
    test, whoever makes it (levl, transformers' GPT-2, timm): on a GPU each one waits for the
    device to finish the step. Files under `allowed` may read: torch's optimizers read their
    step counters, which live on the CPU."""
    seen: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, __original=original, __name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "/tests/" not in caller and not any(part in caller for part in allowed):
                seen.append(f"{__name} in {caller}:{sys._getframe(1).f_lineno}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    return seen


@pytest.mark.parametrize("objective", ["levljepa", "infonce"])
def test_a_step_reads_nothing_back_to_the_host(monkeypatch, objective):
    cfg = micro_synthetic()
    cfg = with_objective_model(dataclasses.replace(
        cfg, objective=dataclasses.replace(cfg.objective, name=objective),
        dist=dataclasses.replace(cfg.dist, grad_accum=2)))
    engine = TorchEngine(build_module(cfg, DistEnv(), CPU), cfg)
    seen = forbid_host_reads(monkeypatch)
    images = torch.randint(0, 256, (MICRO, 3, 64, 64), dtype=torch.uint8)  # as the loader ships
    out = engine.step([(images, *micro_batch(1)[1:]), (images, *micro_batch(2)[1:])], step=3)
    monkeypatch.undo()
    assert seen == []
    assert torch.isfinite(out.terms["loss"]) and out.grad_norm.ndim == 0


# DeepSpeed's ZeRO-1/2 optimizer checks on the host whether its fp32 gradient norm is finite
# before it steps and clips (zero/stage_1_and_2.py via runtime/utils.is_invalid_grad_norm): a
# sync per step that only DeepSpeed can remove, allowed at stage 2 only (at stage 0 levl
# measures the norm itself); everything else in the step reads nothing.
ZERO_READS = ("/torch/optim/", "/deepspeed/runtime/zero/stage_1_and_2.py",
              "/deepspeed/runtime/utils.py")


def _deepspeed_host_reads(out_dir: str) -> dict:
    """The DeepSpeed engine's step (what the vit_b16 recipes run) under the same guard, ZeRO 0
    (levl measures the norm itself) and 2 (DeepSpeed's), an InfoNCE module so the post-step
    clamp of the logit scale runs too, two micro-batches accumulated."""
    from levl_train.ds_engine import DeepSpeedEngine

    results = {}
    for stage in (0, 2):
        cfg = micro_synthetic()
        cfg = with_objective_model(dataclasses.replace(
            cfg, engine="deepspeed", objective=dataclasses.replace(cfg.objective, name="infonce"),
            dist=dataclasses.replace(cfg.dist, zero_stage=stage, grad_accum=2)))
        engine = DeepSpeedEngine(build_module(cfg, DistEnv(), CPU), cfg, micro_batch=MICRO,
                                 world_size=1)
        images = torch.randint(0, 256, (MICRO, 3, 64, 64), dtype=torch.uint8)
        batches = [(images, *micro_batch(1)[1:]), (images, *micro_batch(2)[1:])]
        engine.step(batches, step=0)  # DeepSpeed's first step sets itself up
        with pytest.MonkeyPatch.context() as monkeypatch:
            seen = forbid_host_reads(monkeypatch, ZERO_READS if stage else ("/torch/optim/",))
            out = engine.step(batches, step=1)
        results[stage] = {"seen": seen, "finite": bool(torch.isfinite(out.terms["loss"]))}
    return results


def test_a_deepspeed_step_reads_nothing_back_to_the_host(tmp_path):
    results = on_one_deepspeed_rank(_deepspeed_host_reads, tmp_path)
    for stage in ("0", "2"):
        assert results[stage] == {"seen": [], "finite": True}


def text_and_image_moves(module, before: dict[str, torch.Tensor]) -> tuple[float, float]:
    """The largest change of a text-side weight (text tower, text projection) and of any other."""
    text = image = 0.0
    for name, p in module.named_parameters():
        moved = float((p.detach() - before[name]).abs().max())
        if name.startswith(("model.text.", "model.text_proj.")):
            text = max(text, moved)
        else:
            image = max(image, moved)
    return text, image


def step_with_text_lr_scale(scale: float) -> tuple[float, float, torch.nn.Module]:
    cfg = micro_cfg(optim=dataclasses.replace(micro_cfg().optim, grad_clip=0.0,
                                              text_lr_scale=scale))
    engine = TorchEngine(per_sample_module(cfg), cfg)
    before = {name: p.detach().clone() for name, p in engine.module.named_parameters()}
    engine.step([micro_batch(1)], step=0)
    return (*text_and_image_moves(engine.module, before), engine.module)


def test_text_lr_scale_runs_the_text_side_at_that_multiple_of_the_lr():
    """Adam's first update is lr x sign-like, so the text side's largest move scales with the
    lr it was given; 0 freezes it while the image side still learns."""
    text_full, image_full, _ = step_with_text_lr_scale(1.0)
    text_half, image_half, _ = step_with_text_lr_scale(0.5)
    text_frozen, image_frozen, _ = step_with_text_lr_scale(0.0)
    assert text_half == pytest.approx(0.5 * text_full, rel=1e-3)
    assert image_half == pytest.approx(image_full, rel=1e-6) and image_frozen > 0
    assert text_frozen == 0.0


def test_text_lr_scale_one_keeps_the_two_parameter_groups_of_older_checkpoints():
    cfg = micro_cfg()
    engine = TorchEngine(per_sample_module(cfg), cfg)
    assert [group["weight_decay"] for group in engine.optimizer.param_groups] == \
        [cfg.optim.weight_decay, 0.0]


def _frozen_text_under_zero2(out_dir: str) -> dict:
    from levl_train.ds_engine import DeepSpeedEngine

    base = micro_cfg()
    cfg = micro_cfg(engine="deepspeed", optim=dataclasses.replace(base.optim, text_lr_scale=0.0),
                    dist=dataclasses.replace(base.dist, zero_stage=2))
    engine = DeepSpeedEngine(per_sample_module(cfg), cfg, micro_batch=MICRO, world_size=1)
    before = {name: p.detach().clone() for name, p in engine.module.named_parameters()}
    engine.step([micro_batch(1)], step=0)
    return dict(zip(("text", "image"), text_and_image_moves(engine.module, before), strict=True))


def test_deepspeed_applies_the_text_lr_scale_too(tmp_path):
    moves = on_one_deepspeed_rank(_frozen_text_under_zero2, tmp_path)
    assert moves["text"] == 0.0 and moves["image"] > 0.0
