"""COCO-Stuff 164k: mmsegmentation's 171-class mapping, the layout read back through the sample
pipeline, malformed trees as one error naming the file, absent as skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from levl_eval.data.batches import split_batches, target_transform
from levl_eval.datasets import read_cocostuff
from levl_eval.datasets.cocostuff import CLASSES, UNUSED_IDS, label_map
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.protocols.registry import REAL_DATASETS
from levl_eval.testing.dense import write_cocostuff_layout
from levl_model.preprocess import Preprocess, eval_transform

HALF = Preprocess(size=16)  # the 32x32 fixture, halved: each 8-px band becomes 4 px


def test_label_map_matches_mmsegmentation() -> None:
    lookup = label_map()
    assert len(lookup) == 256 and len(CLASSES) == 171 and len(set(CLASSES)) == 171
    assert sorted(v for v in lookup if v != 255) == list(range(171))
    # spot values of mmseg's clsID_to_trID: 10 -> 10, 12 -> 11, 26 -> 24, 91 -> 80, 181 -> 170
    assert [lookup[i] for i in (0, 10, 12, 26, 91, 181)] == [0, 10, 11, 24, 80, 170]
    assert all(lookup[i] == 255 for i in UNUSED_IDS) and lookup[182] == lookup[255] == 255
    assert (CLASSES[0], CLASSES[80], CLASSES[170]) == ("person", "banner", "wood")


def test_cocostuff_masks_come_back_as_contiguous_classes(tmp_path: Path) -> None:
    data = read_cocostuff(write_cocostuff_layout(tmp_path, size=(32, 32)))
    assert data.num_classes == 171 and data.dataset == "cocostuff"
    assert [s.image.name for s in data.test.files] == ["000000000000.jpg", "000000000001.jpg"]
    assert data.train.files[1].mask == tmp_path / "coco_stuff164k" / "annotations" / "train2017" / "000000000001.png"
    batch = next(split_batches(data.test, eval_transform(HALF), target_transform(data.test, HALF),
                               batch_size=2))
    assert batch["masks"].dtype == torch.uint8 and batch["masks"].shape == (2, 16, 16)
    for i in range(2):  # bands: person, unused thing id 11, stuff 91 + i, unlabeled
        assert batch["masks"][i, 0].tolist() == [0] * 4 + [255] * 4 + [80 + i] * 4 + [255] * 4


def test_cocostuff_is_registered_for_segmentation() -> None:
    assert REAL_DATASETS["segmentation"]["cocostuff"] is read_cocostuff


def test_annotation_of_another_size_is_one_error_naming_it(tmp_path: Path) -> None:
    write_cocostuff_layout(tmp_path, mask_size=(16, 12))
    with pytest.raises(EvalDataError, match=r"train2017/000000000000\.png: size \(16, 12\) differs from its image's \(32, 24\)"):
        read_cocostuff(tmp_path)


def test_rgb_annotation_is_an_error(tmp_path: Path) -> None:
    write_cocostuff_layout(tmp_path)
    bad = tmp_path / "coco_stuff164k" / "annotations" / "val2017" / "000000000001.png"
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(bad)
    with pytest.raises(EvalDataError, match=r"000000000001\.png: PIL mode RGB, not an 8-bit stuffthingmap"):
        read_cocostuff(tmp_path)


def test_image_without_annotation_is_an_error(tmp_path: Path) -> None:
    write_cocostuff_layout(tmp_path)
    (tmp_path / "coco_stuff164k" / "annotations" / "val2017" / "000000000000.png").unlink()
    with pytest.raises(EvalDataError, match=r"000000000000\.png: missing annotation for 000000000000\.jpg"):
        read_cocostuff(tmp_path)


def test_absent_cocostuff_is_not_found_at_its_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as raised:
        read_cocostuff(tmp_path)
    assert str(raised.value) == f"not found at {tmp_path / 'coco_stuff164k'}"
