"""Classification readers (ImageNet, Places365, FGVC-Aircraft, Oxford-IIIT Pets, any
ImageFolder): tiny trees in each standard layout are read into the splits, class names and
prompts zeroshot and linear consume; absent is 'not found'; malformed is one error naming the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from levl_eval.data.batches import split_batches
from levl_eval.datasets import prompts as default_prompts
from levl_eval.datasets import (
    read_aircraft,
    read_imagefolder,
    read_imagenet,
    read_pets,
    read_places365,
)
from levl_eval.datasets.classification import CLASSIFICATION
from levl_eval.datasets.clip_imagenet import OPENAI_IMAGENET_TEMPLATES
from levl_eval.datasets.files import evenly_spaced, per_class_capped
from levl_eval.datasets.fixtures import (
    write_aircraft_layout,
    write_imagefolder_layout,
    write_imagenet_layout,
    write_pets_layout,
    write_places365_layout,
)
from levl_eval.datasets.imagefolder import IMAGEFOLDER, read_folder
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.protocols.registry import REAL_DATASETS
from levl_model.preprocess import Preprocess, eval_transform


def test_classification_readers_are_registered_for_zeroshot_and_linear() -> None:
    assert set(CLASSIFICATION) == {"imagenet", "places365", "aircraft", "pets", "imagefolder"}
    assert REAL_DATASETS["zeroshot"] is CLASSIFICATION and REAL_DATASETS["linear"] is CLASSIFICATION


def test_imagenet_names_wnids_from_the_shipped_synset_table(tmp_path: Path) -> None:
    data = read_imagenet(write_imagenet_layout(tmp_path, train=4, val=2))
    assert data.classes[:2] == ("tench", "goldfish")
    assert data.classes[2:] == ("crane bird", "construction crane")  # both first lemmas: "crane"
    assert data.prompts == default_prompts.IMAGENET and data.dataset == "imagenet"
    assert [s.label for s in data.train.files] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert [s.image.parent.name for s in data.test.files][::2] == ["n01440764", "n01443537",
                                                                  "n02012849", "n03126707"]
    batch = next(split_batches(data.test, eval_transform(Preprocess(size=16)), batch_size=8))
    assert batch["image"].shape == (8, 3, 16, 16) and batch["labels"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    described = data.describe()
    assert described["dataset"] == "imagenet" and described["train_rule"] == "train/ (every image)"


def test_imagenet_classnames_file_overrides_and_must_match_the_class_count(tmp_path: Path) -> None:
    write_imagenet_layout(tmp_path)
    names = tmp_path / "imagenet" / "classnames.txt"
    names.write_text("tench fish\ngoldfish\ncommon crane\nbuilding crane\n")
    assert read_imagenet(tmp_path).classes == ("tench fish", "goldfish", "common crane", "building crane")
    names.write_text("tench\ngoldfish\n")
    with pytest.raises(EvalDataError, match=r"imagenet/classnames\.txt: 2 names for 4 class directories"):
        read_imagenet(tmp_path)


def test_imagenet_offers_clip_s_curated_names_for_zero_shot_by_wnid(tmp_path: Path) -> None:
    # cock and kite: WordNet's first lemmas differ from CLIP's curated names
    write_imagenet_layout(tmp_path, train=1, val=1, wnids=("n01440764", "n01514668", "n01608432"))
    data = read_imagenet(tmp_path)
    assert data.classes == ("tench", "cock", "kite")
    assert data.curated_classes == ("tench", "rooster", "kite (bird of prey)")
    assert "CLIP" in data.curated_source and data.describe()["curated_classes"][1] == "rooster"
    assert data.prompts == OPENAI_IMAGENET_TEMPLATES  # CLIP's 80 ImageNet templates


def test_imagenet_without_imagenet_1k_wnids_has_no_curated_names(tmp_path: Path) -> None:
    write_imagenet_layout(tmp_path, train=1, val=1)
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").rename(tmp_path / "imagenet" / split / "fish")
    (tmp_path / "imagenet" / "classnames.txt").write_text("fish\ngoldfish\ncrane\ntower crane\n")
    data = read_imagenet(tmp_path)
    assert data.curated_classes == () and data.curated_source == ""
    assert "curated_classes" not in data.describe()


def test_imagenet_directory_that_is_no_wnid_needs_a_classnames_file(tmp_path: Path) -> None:
    write_imagenet_layout(tmp_path)
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").rename(tmp_path / "imagenet" / split / "fish")
    with pytest.raises(EvalDataError, match=r"imagenet/train/fish: not an ImageNet-1k wnid; add .*classnames\.txt"):
        read_imagenet(tmp_path)


def test_places365_names_subcategories_in_parentheses(tmp_path: Path) -> None:
    data = read_places365(write_places365_layout(tmp_path))
    assert data.classes == ("airfield", "apartment building (outdoor)")
    assert data.prompts == default_prompts.SCENES and len(data.test.files) == 4


def test_train_split_is_read_whole_and_a_per_class_cap_keeps_evenly_spaced_files(tmp_path: Path) -> None:
    write_imagefolder_layout(tmp_path, train=7, val=5)
    data = read_folder(tmp_path, IMAGEFOLDER)
    assert len(data.train.files) == 14 and len(data.test.files) == 10
    capped = per_class_capped(data.train, 3)
    kept = [s.image.name for s in capped.files if s.label == 0]
    assert kept == ["train_0_000.jpg", "train_0_002.jpg", "train_0_004.jpg"]
    assert [s.label for s in capped.files] == [0, 0, 0, 1, 1, 1] and capped.name != data.train.name
    assert per_class_capped(data.train, None) is data.train and per_class_capped(data.train, 9).files == data.train.files
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7] and evenly_spaced([1, 2], 4) == [1, 2]
    # labels interleaved (a list-file split such as Aircraft): each label capped, stored order kept
    f = data.train.files
    mixed = replace(data.train, files=(f[0], f[7], f[1], f[8], f[2]))
    assert per_class_capped(mixed, 2).files == (f[0], f[7], f[1], f[8])
    assert per_class_capped(mixed, 1).files == (f[0], f[7])


def test_imagefolder_reads_its_own_classnames_and_prompts(tmp_path: Path) -> None:
    write_imagefolder_layout(tmp_path)
    assert read_imagefolder(tmp_path).classes == ("blue jay", "red fox")
    (tmp_path / "imagefolder" / "classnames.txt").write_text("Blue Jay\nRed Fox\n")
    (tmp_path / "imagefolder" / "prompts.txt").write_text("a photo of a {}, a bird or mammal.\n")
    data = read_imagefolder(tmp_path)
    assert data.classes == ("Blue Jay", "Red Fox") and data.prompts == ("a photo of a {}, a bird or mammal.",)
    (tmp_path / "imagefolder" / "prompts.txt").write_text("a photo\n")
    with pytest.raises(EvalDataError, match=r"imagefolder/prompts\.txt: template 'a photo' has no \{\}"):
        read_imagefolder(tmp_path)


def test_imagefolder_val_with_other_classes_is_an_error(tmp_path: Path) -> None:
    write_imagefolder_layout(tmp_path)
    (tmp_path / "imagefolder" / "val" / "red_fox").rename(tmp_path / "imagefolder" / "val" / "fox")
    with pytest.raises(EvalDataError, match=r"imagefolder/val: class directories differ .*'fox'"):
        read_imagefolder(tmp_path)


def test_aircraft_reads_the_official_variant_lists(tmp_path: Path) -> None:
    data = read_aircraft(write_aircraft_layout(tmp_path, trainval=3, test=2))
    assert data.classes == ("707-320", "Cessna 172", "F-16A/B")
    assert [s.label for s in data.train.files] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [s.label for s in data.test.files] == [0, 0, 1, 1, 2, 2]
    assert data.test.files[2].image.name == "1000012.jpg" and data.prompts == default_prompts.AIRCRAFT


def test_aircraft_unknown_variant_names_the_file_and_line(tmp_path: Path) -> None:
    write_aircraft_layout(tmp_path)
    path = tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    path.write_text(path.read_text() + "1000099 Concorde\n")
    with pytest.raises(EvalDataError, match=r"images_variant_test\.txt:7: variant 'Concorde' is not in"):
        read_aircraft(tmp_path)


def test_aircraft_listed_image_that_is_missing_is_an_error(tmp_path: Path) -> None:
    write_aircraft_layout(tmp_path)
    (tmp_path / "fgvc-aircraft-2013b" / "data" / "images" / "1000001.jpg").unlink()
    with pytest.raises(EvalDataError, match=r"images/1000001\.jpg: missing \(listed in .*trainval\.txt\)"):
        read_aircraft(tmp_path)


def test_pets_reads_breeds_from_the_annotation_lists(tmp_path: Path) -> None:
    data = read_pets(write_pets_layout(tmp_path, trainval=3, test=2))
    assert data.classes == ("Abyssinian", "American Bulldog", "Bengal")
    assert [s.label for s in data.test.files] == [0, 0, 1, 1, 2, 2]
    assert data.test.files[0].image.name == "Abyssinian_100.jpg" and data.prompts == default_prompts.PETS


def test_pets_malformed_line_names_the_file_and_line(tmp_path: Path) -> None:
    write_pets_layout(tmp_path)
    path = tmp_path / "oxford-iiit-pet" / "annotations" / "trainval.txt"
    path.write_text("# comment line\n" + path.read_text() + "Bengal_9 cat\n")
    with pytest.raises(EvalDataError, match=r"trainval\.txt:11: expected `<image> <class id 1\.\.37>"):
        read_pets(tmp_path)


@pytest.mark.parametrize(("reader", "dirname"), [
    (read_imagenet, "imagenet"), (read_places365, "places365_standard"),
    (read_aircraft, "fgvc-aircraft-2013b"), (read_pets, "oxford-iiit-pet"),
    (read_imagefolder, "imagefolder"),
])
def test_absent_classification_dataset_is_not_found_at_its_path(tmp_path: Path, reader, dirname: str) -> None:
    with pytest.raises(DatasetNotFound, match=f"not found at {tmp_path / dirname}"):
        reader(tmp_path)
