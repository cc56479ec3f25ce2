"""Patch tokens, label maps and CLS features go to disk as they are extracted and come back
memory-mapped (levl_eval.features.spill): the same values as the model's own output, read from
a file rather than held in the process's memory, through the feature cache and without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from levl_eval.data.batches import open_image
from levl_eval.datasets import read_ade20k
from levl_eval.encoder import load_frozen_checkpoint
from levl_eval.features.cache import FeatureCache
from levl_eval.features.spill import ArrayWriter, RaggedMaps, RaggedWriter
from levl_eval.geometry import FULL_FRAME, image_transform
from levl_eval.testing.worlds import save_micro_checkpoint, write_ade20k_layout


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose mapping holds the tensor's first byte (/proc/self/maps), None when it
    lives in anonymous memory."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(value, 16) for value in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 and fields[5].startswith("/") else None
    return None


def test_rows_round_trip_through_a_mapped_file(tmp_path: Path) -> None:
    writer = ArrayWriter(tmp_path / "rows.bin", torch.float16)
    batches = [torch.randn(3, 4, 5), torch.randn(2, 4, 5)]
    for batch in batches:
        writer.append(batch)
    rows = writer.finish()
    assert rows.dtype == torch.float16 and rows.shape == (5, 4, 5)
    assert torch.equal(rows, torch.cat(batches).half())
    assert mapped_file(rows) == str(tmp_path / "rows.bin")
    assert (tmp_path / "rows.bin").stat().st_size == 5 * 4 * 5 * 2


def test_a_write_into_a_map_never_reaches_the_file(tmp_path: Path) -> None:
    writer = ArrayWriter(tmp_path / "rows.bin")
    writer.append(torch.zeros(2, 3, dtype=torch.uint8))
    rows = writer.finish()
    rows[0, 0] = 7
    assert rows[0, 0] == 7 and (tmp_path / "rows.bin").read_bytes() == bytes(6)


def test_rows_of_another_shape_are_refused(tmp_path: Path) -> None:
    writer = ArrayWriter(tmp_path / "rows.bin")
    writer.append(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"rows of shape \(4,\) after \(3,\)"):
        writer.append(torch.zeros(2, 4))


def test_ragged_maps_keep_each_size(tmp_path: Path) -> None:
    maps = [torch.arange(6, dtype=torch.uint8).view(2, 3), torch.full((4, 1), 9, dtype=torch.uint8)]
    writer = RaggedWriter(tmp_path / "frames.bin")
    writer.append(maps[:1])
    writer.append(maps[1:])
    ragged = writer.finish()
    assert len(ragged) == 2 and [tuple(m.shape) for m in ragged] == [(2, 3), (4, 1)]
    assert all(torch.equal(got, want) for got, want in zip(ragged, maps, strict=True))
    with pytest.raises(ValueError, match="hold 6 values, not 10"):
        RaggedMaps(ragged.values_P, ((2, 3),))


@pytest.fixture
def ade(tmp_path: Path):
    """A micro checkpoint (32 px) and an ADE20K layout of 16 px images and labels."""
    data = read_ade20k(write_ade20k_layout(tmp_path / "datasets", per_split=3))
    return save_micro_checkpoint(tmp_path / "ckpt"), data


def _direct(encoder, split, read) -> torch.Tensor:
    """`read(model, images_BCHW)` over the split, computed here in memory (the reference), in
    the encoder's batches: a kernel may round a row differently in a batch of another size."""
    transform = image_transform(encoder.preprocess_for(FULL_FRAME), True)
    images = torch.stack([transform(open_image(sample.image, "RGB")) for sample in split.files])
    with torch.no_grad():
        return torch.cat([read(encoder.model, batch) for batch in images.split(encoder.batch_size)])


def _direct_patches(encoder, split) -> torch.Tensor:
    """The model's own patch tokens for the split (float16, as cached)."""
    return _direct(encoder, split, lambda model, images: model.encode_image(images).patches_BLD.half())


def _direct_image_features(encoder, split) -> dict[str, torch.Tensor]:
    """The model's own CLS feature, z_v and pred_v(z_v) for the split (float32)."""
    return {"cls_ND": _direct(encoder, split, lambda model, images: model.encode_image(images).cls_BD),
            "z_NE": _direct(encoder, split, lambda model, images: model.encode_image(images).z_BE),
            "pred_NE": _direct(encoder, split, lambda model, images: model.vision_pred(
                model.encode_image(images).z_BE))}


def test_extracted_tokens_and_frames_are_mapped_files_equal_to_the_model_output(ade, tmp_path: Path) -> None:
    ckpt, data = ade
    encoder = load_frozen_checkpoint(ckpt, device="cpu", batch_size=2)[0]
    encoder.feature_cache = cache = FeatureCache(tmp_path / "cache")
    patches = encoder.patch_features(data.test, FULL_FRAME, frame_maps=True)
    assert torch.equal(patches.tokens_NLD, _direct_patches(encoder, data.test))
    entry = next(path for path in (tmp_path / "cache").glob("??/*") if path.is_dir())
    assert mapped_file(patches.tokens_NLD) == str(entry / "tokens_NLD.bin")
    assert isinstance(patches.frame_maps, RaggedMaps) and mapped_file(patches.frame_maps.values_P)
    expected = [np.where(np.asarray(open_image(s.mask, None)) == 0, 255, np.asarray(open_image(s.mask, None)) - 1)
                for s in data.test.files]
    assert [label.tolist() for label in patches.frame_maps] == [e.tolist() for e in expected]

    again = load_frozen_checkpoint(ckpt, device="cpu", batch_size=2)[0]
    again.feature_cache = cache
    reread = again.patch_features(data.test, FULL_FRAME, frame_maps=True)
    assert (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(reread.tokens_NLD, patches.tokens_NLD) and reread.grid_hw == patches.grid_hw
    assert [m.tolist() for m in reread.frame_maps] == [m.tolist() for m in patches.frame_maps]
    assert mapped_file(reread.tokens_NLD) == str(entry / "tokens_NLD.bin")


def test_without_a_cache_the_spill_files_are_gone_and_the_maps_still_read(
    ade, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, data = ade
    monkeypatch.setenv("LEVL_SPILL_DIR", str(tmp_path / "spill"))
    encoder = load_frozen_checkpoint(ckpt, device="cpu", batch_size=2)[0]
    train = encoder.patch_features(data.train, FULL_FRAME)
    assert list((tmp_path / "spill").iterdir()) == []
    assert mapped_file(train.tokens_NLD).endswith("tokens_NLD.bin (deleted)")
    assert torch.equal(train.tokens_NLD, _direct_patches(encoder, data.train))
    assert train.masks_NHW.dtype == torch.uint8 and train.masks_NHW.shape[0] == 3
    assert set(train.masks_NHW[2].unique().tolist()) == {255, 2}  # void left half, class 3 - 1
    images = encoder.image_features(data.test, FULL_FRAME)  # CLS features spill the same way
    assert list((tmp_path / "spill").iterdir()) == []
    assert mapped_file(images.cls_ND).endswith("cls_ND.bin (deleted)")
    assert torch.equal(images.cls_ND, _direct_image_features(encoder, data.test)["cls_ND"])


def test_extracted_cls_features_are_mapped_files_equal_to_the_model_output(ade, tmp_path: Path) -> None:
    """CLS, z_v and pred_v(z_v) go to the cache entry as raw files and come back mapped, the
    first time and from the cache; labels stay in memory."""
    ckpt, data = ade
    encoder = load_frozen_checkpoint(ckpt, device="cpu", batch_size=2)[0]
    encoder.feature_cache = cache = FeatureCache(tmp_path / "cache")
    images = encoder.image_features(data.train, FULL_FRAME)
    expected = _direct_image_features(encoder, data.train)
    entry = next(path for path in (tmp_path / "cache").glob("??/*") if path.is_dir())
    for name, want in expected.items():
        got = getattr(images, name)
        assert got.dtype == torch.float32 and torch.equal(got, want), name
        assert mapped_file(got) == str(entry / f"{name}.bin"), name
    assert images.labels_N.shape == (3,) and mapped_file(images.labels_N) is None

    again = load_frozen_checkpoint(ckpt, device="cpu", batch_size=2)[0]
    again.feature_cache = cache
    reread = again.image_features(data.train, FULL_FRAME)
    assert (cache.hits, cache.misses) == (1, 1)
    for name, want in expected.items():
        assert torch.equal(getattr(reread, name), want), name
        assert mapped_file(getattr(reread, name)) == str(entry / f"{name}.bin"), name
    assert torch.equal(reread.labels_N, images.labels_N) and reread.captions == images.captions


@pytest.mark.parametrize(("environment", "expected"), [({}, "True"), ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "False")])
def test_the_mmap_threshold_is_fixed_unless_the_user_set_one(environment: dict, expected: str) -> None:
    """levl-eval's entry point pins glibc's mmap threshold (a head's batch copies must not grow
    the heap); a threshold the user chose in the environment is left alone."""
    import os
    import subprocess
    import sys

    code = "from levl_eval.features.spill import fix_mmap_threshold; print(fix_mmap_threshold())"
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run([sys.executable, "-c", code], env={**env, **environment},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == expected
