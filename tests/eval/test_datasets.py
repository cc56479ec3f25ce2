"""Readers of the standard layouts: tiny fixtures are read right, an absent dataset is 'not
found', a malformed one is a one-line error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from levl_eval.data.batches import mask_transform, split_batches
from levl_eval.datasets import read_ade20k, read_coco, read_cocostuff, read_flickr30k, read_in9
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.testing.dense import write_cocostuff_layout
from levl_eval.testing.worlds import (
    karpathy_coco_document,
    write_ade20k_layout,
    write_image,
    write_in9_layout,
    write_karpathy_json,
)
from levl_model.preprocess import Preprocess, eval_transform

PREPROCESS = Preprocess(size=16)


def test_ade20k_is_read_with_void_and_shifted_classes(tmp_path: Path) -> None:
    data = read_ade20k(write_ade20k_layout(tmp_path))
    assert data.num_classes == 150 and data.classes[0] == "class_0"
    assert [s.image.name for s in data.test.files] == ["ADE_val_00000000.jpg", "ADE_val_00000001.jpg"]
    assert data.train.files[1].mask.name == "ADE_train_00000001.png"
    batch = next(split_batches(data.test, eval_transform(PREPROCESS), mask_transform(PREPROCESS),
                               batch_size=2))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["masks"].dtype == torch.uint8
    assert batch["masks"][:, :, :8].eq(255).all()  # ADE 0 -> void
    assert batch["masks"][0, :, 8:].eq(0).all() and batch["masks"][1, :, 8:].eq(1).all()  # k -> k-1


def test_ade20k_class_names_come_from_object_info(tmp_path: Path) -> None:
    write_ade20k_layout(tmp_path)
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i + 1}\t0.1\t1\t1\tname{i};alias" for i in range(150)]
    (tmp_path / "ADEChallengeData2016" / "objectInfo150.txt").write_text("\n".join(rows))
    assert read_ade20k(tmp_path).classes[:2] == ("name0", "name1")


def test_ade20k_mask_of_another_size_is_one_error_naming_it(tmp_path: Path) -> None:
    write_ade20k_layout(tmp_path, mask_size=(12, 16))
    with pytest.raises(EvalDataError, match=r"ADE_train_00000000\.png: size \(12, 16\) differs"):
        read_ade20k(tmp_path)


def test_ade20k_image_without_annotation_is_an_error(tmp_path: Path) -> None:
    write_ade20k_layout(tmp_path)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(EvalDataError, match="ADE_val_00000001.png: missing annotation"):
        read_ade20k(tmp_path)


def test_in9_without_train_splits_original_val_in_halves(tmp_path: Path) -> None:
    data = read_in9(write_in9_layout(tmp_path, with_train=False))
    assert data.classes == ("dog", "bird") and "even-position half" in data.train_rule
    assert [(s.image.name, s.label) for s in data.train.files] == [
        ("n0_0.JPEG", 0), ("n0_2.JPEG", 0), ("n1_0.JPEG", 1), ("n1_2.JPEG", 1)]
    for variant, split in data.variants.items():
        assert [s.image.name for s in split.files] == ["n0_1.JPEG", "n0_3.JPEG", "n1_1.JPEG", "n1_3.JPEG"]
        assert all(s.image.parts[-4] == variant for s in split.files)
    batch = next(split_batches(data.variants["mixed_rand"], eval_transform(PREPROCESS), batch_size=8))
    assert batch["labels"].tolist() == [0, 0, 1, 1] and batch["masks"] is None


def test_in9_uses_original_train_when_present(tmp_path: Path) -> None:
    data = read_in9(write_in9_layout(tmp_path, with_train=True))
    assert data.train_rule == "original/train" and len(data.train.files) == 6
    assert len(data.variants["original"].files) == 8


def test_in9_variant_missing_an_image_is_an_error(tmp_path: Path) -> None:
    write_in9_layout(tmp_path, with_train=False)
    (tmp_path / "bg_challenge" / "mixed_rand" / "val" / "01_bird" / "n1_2.JPEG").unlink()
    with pytest.raises(EvalDataError, match=r"mixed_rand/val/01_bird/n1_2\.JPEG: missing"):
        read_in9(tmp_path)


def test_karpathy_coco_test_split_is_read(tmp_path: Path) -> None:
    data = read_coco(write_karpathy_json(tmp_path, karpathy_coco_document(tmp_path)))
    assert [s.image.name for s in data.split.files] == ["COCO_0.jpg", "COCO_2.jpg"]
    assert data.split.files[1].captions == ("image 2 caption 0", "image 2 caption 1")
    batch = next(split_batches(data.split, eval_transform(PREPROCESS), batch_size=4))
    assert batch["captions"] == [s.captions for s in data.split.files]


def test_karpathy_flickr_entries_without_filepath(tmp_path: Path) -> None:
    write_image(tmp_path / "flickr30k" / "flickr30k-images" / "1.jpg")
    document = {"images": [{"filename": "1.jpg", "split": "test", "sentences": [{"raw": "a dog"}]}]}
    data = read_flickr30k(write_karpathy_json(tmp_path, document, "flickr30k", "dataset_flickr30k.json"))
    assert data.split.files[0].image == tmp_path / "flickr30k" / "flickr30k-images" / "1.jpg"


def test_karpathy_json_without_images_is_one_error_naming_it(tmp_path: Path) -> None:
    write_karpathy_json(tmp_path, {"dataset": "coco"})
    with pytest.raises(EvalDataError, match=r"dataset_coco\.json: no `images` list"):
        read_coco(tmp_path)


def test_karpathy_listed_image_that_is_missing_is_an_error(tmp_path: Path) -> None:
    document = karpathy_coco_document(tmp_path)
    (tmp_path / "coco" / "val2014" / "COCO_2.jpg").unlink()
    write_karpathy_json(tmp_path, document)
    with pytest.raises(EvalDataError, match=r"COCO_2\.jpg: missing \(listed in dataset_coco\.json images\[2\]\)"):
        read_coco(tmp_path)


@pytest.mark.parametrize(("reader", "expected"), [
    (read_ade20k, "ADEChallengeData2016"), (read_in9, "bg_challenge"),
    (read_coco, "coco/dataset_coco.json"), (read_flickr30k, "flickr30k/dataset_flickr30k.json"),
])
def test_absent_dataset_is_not_found_at_its_path(tmp_path: Path, reader, expected: str) -> None:
    with pytest.raises(DatasetNotFound) as raised:
        reader(tmp_path)
    assert str(raised.value) == f"not found at {tmp_path / expected}"


@pytest.mark.parametrize(("write", "read", "image_dir", "hint"), [
    (write_ade20k_layout, read_ade20k, "ADEChallengeData2016/images/validation",
     "re-extract ADEChallengeData2016.zip"),
    (write_cocostuff_layout, read_cocostuff, "coco_stuff164k/images/val2017", "re-extract val2017.zip"),
])
def test_segmentation_tree_without_images_names_the_dataset_s_own_archive(
    tmp_path: Path, write, read, image_dir: str, hint: str
) -> None:
    write(tmp_path)
    for image in (tmp_path / image_dir).iterdir():
        image.unlink()
    with pytest.raises(EvalDataError, match=f"{image_dir}: holds no images; {hint}$"):
        read(tmp_path)


def test_ade20k_rgb_annotation_is_an_error(tmp_path: Path) -> None:
    write_ade20k_layout(tmp_path)
    write_image(tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png")
    with pytest.raises(EvalDataError, match=r"ADE_train_00000001\.png: PIL mode RGB, not an 8-bit label map"):
        read_ade20k(tmp_path)
