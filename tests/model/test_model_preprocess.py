"""Image transforms: output shape and CLIP normalisation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from levl_model import CLIP_MEAN, CLIP_STD, ConfigError, Preprocess, eval_transform, train_transform


def mean_coloured_image(width: int, height: int) -> Image.Image:
    colour = tuple(round(m * 255) for m in CLIP_MEAN)
    return Image.new("RGB", (width, height), colour)


def test_eval_transform_shape_and_normalisation():
    out = eval_transform(Preprocess(size=32))(mean_coloured_image(64, 48))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.abs().max() < 1 / 255 / min(CLIP_STD)  # the mean colour maps to ~0


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    """A white band on the left survives the 32 px centre crop only when the shorter side is
    resized to 32 (band scaled into the crop), not when it is resized to 40 first."""
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 22, 40))
    plain = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    margin = eval_transform(Preprocess(size=32, resize_shorter=40, **plain))(image)
    tight = eval_transform(Preprocess(size=32, **plain))(image)
    assert margin.shape == tight.shape == (3, 32, 32)
    assert margin.max() < 0.05 and tight[:, :, 0].min() > 0.9


def test_train_transform_shape_and_grey_input_becomes_rgb():
    transform = train_transform(Preprocess(size=32), scale=(0.5, 1.0))
    torch.manual_seed(0)
    assert transform(Image.new("L", (50, 40), 128)).shape == (3, 32, 32)
    assert transform(mean_coloured_image(40, 40)).shape == (3, 32, 32)


def test_uint8_pixels_normalised_later_are_bitwise_torchvisions_values():
    """The trainer ships uint8 pixels and normalises on the device: the values must be exactly
    torchvision's ToTensor + Normalize, so moving the normalisation changes no run."""
    from torchvision import transforms as T

    from levl_model.preprocess import normalize

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (40, 50, 3), dtype=torch.uint8, generator=generator).numpy()
    image = Image.fromarray(pixels)
    p = Preprocess(size=32)
    for make in (lambda **kw: train_transform(p, scale=(0.5, 1.0), **kw),
                 lambda **kw: eval_transform(p, **kw)):
        torch.manual_seed(3)
        shipped = make(uint8=True)(image)
        torch.manual_seed(3)
        expected = make()(image)
        assert shipped.dtype == torch.uint8 and shipped.shape == (3, 32, 32)
        assert torch.equal(normalize(shipped[None], p)[0], expected)
    reference = T.Normalize(p.mean, p.std)(T.ToTensor()(image))
    assert torch.equal(normalize(T.PILToTensor()(image)[None], p)[0], reference)


def test_preprocess_round_trips_and_rejects_bad_values():
    p = Preprocess(size=224, resize_shorter=256)
    assert Preprocess.from_dict(p.to_dict()) == p
    assert p.to_dict()["mean"] == list(CLIP_MEAN)
    with pytest.raises(ConfigError, match="preprocess.interpolation"):
        Preprocess(size=32, interpolation="lanczos9")
    with pytest.raises(ConfigError, match="preprocess.std"):
        Preprocess(size=32, std=(0.1, 0.0, 0.1))
    with pytest.raises(ConfigError, match="preprocess.crop"):
        Preprocess.from_dict({"size": 32, "crop": 1})
