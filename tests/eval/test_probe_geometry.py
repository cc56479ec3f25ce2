"""The probes' image geometry and training split (METHOD.md, "Linear probe"): on a real dataset
every probe sees shorter side 256 (bicubic) + centre crop 224 under the checkpoint's own
mean/std; the synthetic world keeps the checkpoint's own geometry; the training split is used
whole unless a per-class cap is asked for; the report records both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from levl_eval.cli import app
from levl_eval.data.world import load_eval_data
from levl_eval.datasets import read_imagenet
from levl_eval.datasets.fixtures import IMAGENET_WNIDS, write_imagenet_layout
from levl_eval.encoder import FrozenEncoder, load_frozen_checkpoint
from levl_eval.errors import EvalError
from levl_eval.geometry import CHECKPOINT, PAPER_PROBE, probe_geometry
from levl_eval.protocols.linear.entry import LinearSuite
from levl_eval.protocols.linear.protocol import LinearProbe, LinearProbeSettings
from levl_eval.protocols.registry import build_protocol
from levl_eval.runner import EvalOptions
from levl_eval.testing.worlds import StaticFeatures, save_micro_checkpoint, static_data
from levl_model.preprocess import Preprocess

FAST = LinearProbeSettings(epochs=2)
# a checkpoint recording its own stats and a 32 px bilinear geometry: neither CLIP's nor the paper's
OWN = Preprocess(size=32, mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3), interpolation="bilinear")


def _encoder(tmp_path: Path) -> FrozenEncoder:
    ckpt = save_micro_checkpoint(tmp_path / "ckpt", preprocess=OWN)
    return load_frozen_checkpoint(ckpt, device="cpu", batch_size=256)[0]


def _record_inputs(encoder: FrozenEncoder) -> list[torch.Tensor]:
    """Every image batch the encoder's model is fed from now on."""
    seen: list[torch.Tensor] = []
    encode_image = encoder.model.encode_image

    def recording(images_BCHW: torch.Tensor):
        seen.append(images_BCHW.clone())
        return encode_image(images_BCHW)

    encoder.model.encode_image = recording
    return seen


def _by_hand(path: Path, mean: tuple, std: tuple) -> torch.Tensor:
    """A 48x32 image: shorter side 32 -> 256 is 384x256 (PIL bicubic), the centre 224 square is
    the box (80, 16, 304, 240), then /255 and the given mean/std."""
    crop = Image.open(path).convert("RGB").resize((384, 256), Image.Resampling.BICUBIC).crop((80, 16, 304, 240))
    pixels_CHW = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)
    return (pixels_CHW - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def test_paper_geometry_replaces_the_resize_and_crop_and_keeps_the_checkpoint_stats() -> None:
    assert PAPER_PROBE.applied_to(OWN) == Preprocess(size=224, mean=OWN.mean, std=OWN.std,
                                                     interpolation="bicubic", resize_shorter=256)
    assert CHECKPOINT.applied_to(OWN) is OWN
    assert probe_geometry("imagenet") is PAPER_PROBE and probe_geometry("in9") is PAPER_PROBE
    assert probe_geometry("synth") is CHECKPOINT
    options = EvalOptions(sections={"linear": LinearSuite(train_per_class_cap=5)})
    assert options.protocol_options("linear", "imagenet")["geometry"] is PAPER_PROBE
    assert options.protocol_options("linear", "imagenet")["train_per_class_cap"] == 5
    assert options.protocol_options("linear")["geometry"] is CHECKPOINT  # the synthetic world's task
    assert options.protocol_options("linear")["train_per_class_cap"] is None
    assert options.protocol_options("background", "in9") == {"geometry": PAPER_PROBE}
    assert "geometry" not in options.protocol_options("zeroshot", "imagenet")  # its own preprocessing


def test_linear_probe_on_a_real_dataset_sees_resize_256_bicubic_crop_224_under_the_checkpoint_stats(
    tmp_path: Path,
) -> None:
    root = write_imagenet_layout(tmp_path / "datasets", train=2, val=1)
    image = root / "imagenet" / "val" / IMAGENET_WNIDS[0] / "val_0_000.JPEG"  # the test split's first
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)  # 48 wide, 32 high: the crop is off-centre in x only
    encoder, data = _encoder(tmp_path), read_imagenet(root)
    seen = _record_inputs(encoder)
    protocol = build_protocol("linear", **EvalOptions().protocol_options("linear", "imagenet"))
    result = protocol.run(encoder, data)

    train_BCHW, test_BCHW = seen  # one batch per split
    assert train_BCHW.shape == (8, 3, 224, 224) and test_BCHW.shape == (4, 3, 224, 224)
    torch.testing.assert_close(test_BCHW[0], _by_hand(image, OWN.mean, OWN.std), rtol=0, atol=1e-5)
    assert result["settings"]["geometry"] == PAPER_PROBE.describe()
    assert result["data"]["train"]["samples"] == 8

    # zero-shot and retrieval read the same split through the checkpoint's own transform
    encoder.image_features(data.test)
    assert seen[-1].shape == (4, 3, 32, 32) and len(seen) == 3
    assert encoder.image_features(data.test, PAPER_PROBE) is encoder.image_features(data.test, PAPER_PROBE)
    assert len(seen) == 3  # each (split, transform) is extracted once


def test_the_synthetic_world_keeps_the_checkpoint_s_own_geometry(eval_world: Path, micro_run: Path) -> None:
    encoder, _ = load_frozen_checkpoint(micro_run, device="cpu", batch_size=64)
    seen = _record_inputs(encoder)
    protocol = build_protocol("linear", **EvalOptions().protocol_options("linear"))
    result = protocol.run(encoder, load_eval_data(eval_world))
    assert [tuple(batch.shape) for batch in seen] == [(24, 3, 32, 32)] * 2
    assert result["settings"]["geometry"] == CHECKPOINT.describe()


def test_the_per_class_cap_is_off_by_default_and_caps_the_training_images_when_asked(tmp_path: Path) -> None:
    root = write_imagenet_layout(tmp_path / "datasets", train=4, val=1)
    encoder, data = _encoder(tmp_path), read_imagenet(root)
    seen = _record_inputs(encoder)
    whole = LinearProbe(settings=FAST).run(encoder, data)
    assert [batch.shape[0] for batch in seen] == [16, 4]  # every train image of the 4 classes
    assert whole["data"]["train"] == {"samples": 16, "skipped": {}}
    assert whole["settings"]["train_per_class_cap"] is None

    seen.clear()
    capped = LinearProbe(settings=FAST, train_per_class_cap=3).run(encoder, data)
    assert [batch.shape[0] for batch in seen] == [12]  # 3 per class; val's features are reused
    assert capped["data"]["train"] == {"samples": 12, "skipped": {}, "files_before_cap": 16,
                                       "files_after_cap": 12}
    assert capped["settings"]["train_per_class_cap"] == 3


def test_a_cap_on_a_manifest_split_or_below_one_is_refused() -> None:
    with pytest.raises(EvalError, match="at least 1"):
        LinearProbe(train_per_class_cap=0)
    with pytest.raises(EvalError, match=r"split eval-train: a per-class cap applies to a real dataset"):
        LinearProbe(train_per_class_cap=2).run(StaticFeatures(), static_data(2))


def test_cli_cap_reaches_the_probe_and_the_report(eval_world: Path, micro_run: Path, tmp_path: Path) -> None:
    root = write_imagenet_layout(tmp_path / "datasets", train=4, val=1)
    args = ["linear", "--ckpt", str(micro_run), "--data", str(eval_world), "--device", "cpu",
            "--datasets", str(root), "--no-cache"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--train-per-class-cap", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["suite"]["linear"]["train_per_class_cap"] == 2
    # the capped probe is not the paper's protocol: its ImageNet number is withheld, saying why
    withheld = report["paper_reference"]["not_comparable"]["linear:imagenet"]
    assert withheld["metrics"] == ["top1"] and "linear:imagenet" not in report["paper_reference"]["tasks"]
    assert withheld["reason"].startswith("train set capped at 2 images/class (8 of 16 images")
    assert f"not comparable: {withheld['reason']} |" in (tmp_path / "out" / "report.md").read_text()
    for encoder in report["encoders"]:
        imagenet = encoder["protocols"]["linear:imagenet"]
        assert imagenet["data"]["train"]["samples"] == 8 and imagenet["settings"]["train_per_class_cap"] == 2
        assert encoder["protocols"]["linear"]["settings"]["train_per_class_cap"] is None  # synth: whole
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o2"), "--train-per-class-cap", "0"])
    assert refused.exit_code == 2
