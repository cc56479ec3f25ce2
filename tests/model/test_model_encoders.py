"""Encoder readouts and model shapes for the micro config."""

from __future__ import annotations

import pytest
import torch

from levl_model import ImageFeatures, LevlModel, TextFeatures, build_model


def test_submodule_names_are_the_checkpoint_prefixes(micro_model):
    names = [name for name, _ in micro_model.named_children()]
    assert names == ["vision", "text", "vision_proj", "text_proj", "vision_pred", "text_pred"]


def test_encode_image_shapes(micro_model):
    feats = micro_model.encode_image(torch.randn(3, 3, 32, 32))
    assert isinstance(feats, ImageFeatures)
    assert feats.cls_BD.shape == (3, 64)
    assert feats.patches_BLD.shape == (3, (32 // 8) * (32 // 8), 64)
    assert feats.z_BE.shape == (3, 16)


def test_dynamic_image_size_gives_matching_patch_grid(micro_model):
    feats = micro_model.encode_image(torch.randn(2, 3, 48, 40))
    assert feats.patches_BLD.shape == (2, 6 * 5, 64)


def test_cls_readout_is_the_final_norm_cls_token(micro_model):
    images = torch.randn(2, 3, 32, 32)
    vision = micro_model.vision
    tokens = vision.norm(vision.blocks(vision._pos_embed(vision.patch_embed(images))))
    feats = micro_model.encode_image(images)
    torch.testing.assert_close(feats.cls_BD, tokens[:, 0])
    torch.testing.assert_close(feats.patches_BLD, tokens[:, 1:])


def test_encode_text_and_forward_shapes(micro_model, batch):
    images, input_ids, attention_mask = batch
    feats = micro_model.encode_text(input_ids, attention_mask)
    assert isinstance(feats, TextFeatures)
    assert feats.eos_BD.shape == (4, 64) and feats.z_BE.shape == (4, 16)
    out = micro_model(images, input_ids, attention_mask)
    assert set(out) == {"z_v", "z_t", "pred_v", "pred_t"}
    assert all(v.shape == (4, 16) for v in out.values())


def test_pred_v_is_the_vision_predictor_of_z_v(micro_model, batch):
    micro_model.eval()
    out = micro_model(*batch)
    torch.testing.assert_close(out["pred_v"], micro_model.vision_pred(out["z_v"]))
    torch.testing.assert_close(out["pred_t"], micro_model.text_pred(out["z_t"]))


def test_eos_readout_ignores_padding_and_reads_the_last_real_token(micro_model, batch):
    _, input_ids, attention_mask = batch
    text = micro_model.text
    padded_row = int((attention_mask.sum(1) < attention_mask.shape[1]).nonzero()[0])
    last = int(attention_mask[padded_row].sum()) - 1
    before = text(input_ids, attention_mask)

    repadded = input_ids.clone()
    repadded[padded_row, last + 1 :] = 123
    torch.testing.assert_close(text(repadded, attention_mask), before, rtol=1e-5, atol=1e-6)

    changed = input_ids.clone()
    changed[padded_row, last] = 321
    after = text(changed, attention_mask)
    assert not torch.allclose(after[padded_row], before[padded_row])
    others = [i for i in range(len(input_ids)) if i != padded_row]
    torch.testing.assert_close(after[others], before[others])


def test_text_encoder_has_no_dropout(micro_model):
    gpt2 = micro_model.text.transformer.config
    assert (gpt2.resid_pdrop, gpt2.embd_pdrop, gpt2.attn_pdrop) == (0.0, 0.0, 0.0)
    assert gpt2.n_positions == 77 and gpt2.vocab_size == 50257



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_text_mlp_activation_is_gpt2s_gelu_new_up_to_rounding(micro_model, dtype):
    """The fused kernel (gelu_pytorch_tanh) computes transformers' gelu_new, 0.5·x·(1 +
    tanh(√(2/π)(x + 0.044715x³))), up to float rounding: value and gradient."""
    from transformers.activations import ACT2FN

    act = micro_model.text.transformer.h[0].mlp.act
    x = (torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4)
    x.requires_grad_()
    reference = ACT2FN["gelu_new"]
    got, expected = act(x), reference(x)
    ulp = torch.finfo(dtype).eps * x.detach().abs().clamp(min=1)
    assert ((got - expected).abs() <= 2 * ulp).all()
    (grad,) = torch.autograd.grad(got.sum(), x)
    (expected_grad,) = torch.autograd.grad(reference(x).sum(), x)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=float(8 * ulp.max()))

def test_build_model_is_reproducible_and_leaves_global_rng_alone(micro_cfg):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = build_model(micro_cfg, seed=1), build_model(micro_cfg, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    c = build_model(micro_cfg, seed=2)
    assert not torch.equal(a.vision.pos_embed, c.vision.pos_embed)
    assert isinstance(a, LevlModel) and a.config == micro_cfg
