"""Features come from the checkpoint's own weights and preprocessing, in eval mode, once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from levl_data.loader import build_loader
from levl_eval.data.world import load_eval_data
from levl_eval.encoder import load_frozen_checkpoint, random_encoder
from levl_eval.features.extract import class_prompt_texts
from levl_model.model import build_model
from levl_model.preprocess import eval_transform


def _reference_z(seed: int, encoder, images_BCHW: torch.Tensor) -> torch.Tensor:
    model = build_model(encoder.model.config, seed=seed).eval()
    with torch.no_grad():
        return model.encode_image(images_BCHW).z_BE


def test_checkpoint_and_baseline_features_match_their_weights(eval_world: Path, micro_run: Path) -> None:
    data = load_eval_data(eval_world)
    encoder, spec = load_frozen_checkpoint(micro_run, device="cpu", batch_size=5)
    baseline = random_encoder(spec, seed=0, name="random", device="cpu", batch_size=24)
    ours, theirs = encoder.image_features(data.test), baseline.image_features(data.test)

    assert ours.num_samples == 24 and ours.skipped == {}
    assert ours.labels_N.tolist() == [i % 4 for i in range(24)]  # manifest order, json labels
    assert ours.z_NE.shape == (24, 16) and ours.cls_ND.shape == (24, 64)
    assert not torch.allclose(ours.z_NE, theirs.z_NE)

    # recompute the first images by hand through the checkpoint's preprocessing
    loader = build_loader(data.test.manifest, batch_size=3, image_transform=eval_transform(spec.preprocess),
                          shuffle_buffer=0, drop_last=False)
    images_BCHW = next(iter(loader))["image"]
    torch.testing.assert_close(ours.z_NE[:3], _reference_z(1, encoder, images_BCHW), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs.z_NE[:3], _reference_z(0, encoder, images_BCHW), rtol=1e-4, atol=1e-5)


def test_features_do_not_depend_on_batch_size_and_are_memoised(eval_world: Path, micro_run: Path) -> None:
    data = load_eval_data(eval_world)
    small, _ = load_frozen_checkpoint(micro_run, device="cpu", batch_size=7)
    large, _ = load_frozen_checkpoint(micro_run, device="cpu", batch_size=24)
    first = small.image_features(data.train)
    torch.testing.assert_close(first.pred_NE, large.image_features(data.train).pred_NE, rtol=1e-4, atol=1e-5)
    assert small.image_features(data.train) is first


def test_class_texts_are_class_major(eval_world: Path, micro_run: Path) -> None:
    data = load_eval_data(eval_world)
    encoder, _ = load_frozen_checkpoint(micro_run, device="cpu", batch_size=3)
    text = encoder.class_text_features(data.classes, data.prompts)
    assert text.z_CPE.shape == (4, 2, 16) and text.pred_CPE.shape == (4, 2, 16)
    texts = class_prompt_texts(data.classes, data.prompts)
    assert texts[:3] == ["a photo of a shape0.", "a shape0.", "a photo of a shape1."]
    ids_BL, mask_BL = encoder.tokenizer(texts[2:3])
    with torch.no_grad():
        z_1E = encoder.model.encode_text(ids_BL, mask_BL).z_BE
    torch.testing.assert_close(text.z_CPE[1, 0], z_1E[0], rtol=1e-4, atol=1e-5)


def test_each_checkpoint_and_its_baseline_are_fed_with_its_own_preprocessing(
    eval_world: Path, micro_run: Path, tmp_path: Path
) -> None:
    ckpt = shutil.copytree(micro_run / "checkpoints" / "step_0000007", tmp_path / "own-stats")
    metadata = json.loads((ckpt / "metadata.json").read_text())
    metadata["preprocess"] |= {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    (ckpt / "metadata.json").write_text(json.dumps(metadata))
    data = load_eval_data(eval_world)
    own, spec = load_frozen_checkpoint(ckpt, device="cpu", batch_size=24)
    clip, _ = load_frozen_checkpoint(micro_run, device="cpu", batch_size=24)  # same weights
    baseline = random_encoder(spec, seed=0, name="random", device="cpu", batch_size=24)
    assert spec.preprocess.mean == (0.5, 0.5, 0.5) and baseline.preprocess == spec.preprocess

    loader = build_loader(data.test.manifest, batch_size=3, image_transform=eval_transform(spec.preprocess),
                          shuffle_buffer=0, drop_last=False)
    images_BCHW = next(iter(loader))["image"]
    z_NE = own.image_features(data.test).z_NE
    torch.testing.assert_close(z_NE[:3], _reference_z(1, own, images_BCHW), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(z_NE, clip.image_features(data.test).z_NE, atol=1e-3)


def test_a_contrastive_checkpoint_with_untrained_predictors_is_read_without_them(
        eval_world: Path, tmp_path: Path) -> None:
    """Written before contrastive runs stopped building predictors: its MLPs are at their random
    init, so neither it nor its random baseline offers predictor features to the readouts."""
    from levl_eval.testing.worlds import save_micro_checkpoint
    from levl_model.config import ObjectiveConfig

    ckpt = save_micro_checkpoint(tmp_path / "infonce", objective_cfg=ObjectiveConfig(name="infonce"))
    encoder, spec = load_frozen_checkpoint(ckpt, device="cpu", batch_size=8)
    baseline = random_encoder(spec, seed=0, name="random", device="cpu", batch_size=8)
    assert spec.model_config.heads.predictors is False
    data = load_eval_data(eval_world)
    for source in (encoder, baseline):
        assert not source.model.has_predictors
        assert source.image_features(data.test).pred_NE is None
        assert source.class_text_features(data.classes, data.prompts).pred_CPE is None
