"""VQA readers (GQA, VQAv2, POPE): tiny trees in each official layout become the vlm protocol's
VQAData (one sample per image with all its questions), each scored by its own metric; absent
is 'not found'; malformed is one error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from levl_eval.datasets import REAL_DATASETS, read_gqa, read_pope, read_vqav2
from levl_eval.datasets.fixtures import write_gqa_layout, write_pope_layout, write_vqav2_layout
from levl_eval.errors import DatasetNotFound, EvalDataError
from levl_eval.vlm_items import split_items
from levl_eval.vlm_scores import open_scores, pope_scores


def items(split, name: str = "split"):
    return split_items([sample.qa for sample in split.files], name, None)


def test_vqa_readers_are_registered_for_vlm() -> None:
    assert REAL_DATASETS["vlm"] == {"gqa": read_gqa, "vqav2": read_vqav2, "pope": read_pope}


def test_gqa_groups_questions_per_image_and_scores_exact_match(tmp_path: Path) -> None:
    data = read_gqa(write_gqa_layout(tmp_path, train=4, test=2))
    assert data.dataset == "gqa" and data.train.name == "gqa/train_balanced"
    assert [s.image.name for s in data.test.files] == ["n161300.jpg", "n161301.jpg"]
    test_items = items(data.test)
    assert [(i.image, i.kind, i.target) for i in test_items] == [
        (0, "verify", "yes"), (0, "query", "red"), (1, "verify", "no"), (1, "query", "blue")]
    assert not any(i.is_yes_no for i in test_items)  # GQA yes/no answers are open-ended EM
    scores = open_scores(test_items, ["Yes", "the red", "yes", "blue."])
    assert scores["exact_match"] == 0.75 and scores["by_type"]["verify"]["exact_match"] == 0.5
    assert data.describe()["train_rule"] == "train_balanced: every image (4)"


def test_gqa_train_images_are_capped_evenly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import levl_eval.datasets.gqa as gqa

    monkeypatch.setattr(gqa, "TRAIN_IMAGE_CAP", 2)
    data = read_gqa(write_gqa_layout(tmp_path, train=5, test=1))
    assert [s.image.name for s in data.train.files] == ["2370000.jpg", "2370002.jpg"]
    assert all(len(s.qa) == 2 for s in data.train.files)
    assert data.notes["train_rule"].startswith("train_balanced: 2 of 5 images, evenly spaced")


def test_gqa_question_without_answer_names_the_file_and_question(tmp_path: Path) -> None:
    write_gqa_layout(tmp_path)
    path = tmp_path / "gqa" / "questions" / "testdev_balanced_questions.json"
    document = json.loads(path.read_text())
    del document["n1613000"]["answer"]
    path.write_text(json.dumps(document))
    with pytest.raises(EvalDataError, match=r"testdev_balanced_questions\.json: question 'n1613000' lacks"):
        read_gqa(tmp_path)


def test_gqa_questions_that_are_not_json_name_the_file(tmp_path: Path) -> None:
    write_gqa_layout(tmp_path)
    (tmp_path / "gqa" / "questions" / "train_balanced_questions.json").write_text("{\"truncated")
    with pytest.raises(EvalDataError, match=r"train_balanced_questions\.json: not valid JSON"):
        read_gqa(tmp_path)


def test_vqav2_joins_questions_with_ten_human_answers_target_first(tmp_path: Path) -> None:
    data = read_vqav2(write_vqav2_layout(tmp_path, train=3, test=2))
    assert [s.image.name for s in data.test.files] == ["COCO_val2014_000000000100.jpg",
                                                       "COCO_val2014_000000000101.jpg"]
    assert data.test.files[0].image.parent == tmp_path / "coco" / "val2014"
    first = items(data.test)[0]
    assert first.target == "red" and len(first.answers) == 10 and first.kind == "other"
    # 9 of 10 humans say red after normalisation ("Red!"): full VQA accuracy; "purple" is 1/3.
    scores = open_scores(items(data.test), ["red", "purple"])
    assert scores["vqa_accuracy"] == pytest.approx((1 + 1 / 3) / 2)


def test_vqav2_question_without_annotation_names_the_annotation_file(tmp_path: Path) -> None:
    write_vqav2_layout(tmp_path)
    path = tmp_path / "vqav2" / "v2_mscoco_val2014_annotations.json"
    document = json.loads(path.read_text())
    document["annotations"].pop()
    path.write_text(json.dumps(document))
    with pytest.raises(EvalDataError, match=r"v2_mscoco_val2014_annotations\.json: no annotation for question_id 1010"):
        read_vqav2(tmp_path)


def test_vqav2_missing_coco_image_is_an_error(tmp_path: Path) -> None:
    write_vqav2_layout(tmp_path)
    (tmp_path / "coco" / "train2014" / "COCO_train2014_000000000101.jpg").unlink()
    with pytest.raises(EvalDataError, match=r"COCO_train2014_000000000101\.jpg: missing \(listed in"):
        read_vqav2(tmp_path)


def test_pope_splits_images_in_halves_and_scores_per_kind(tmp_path: Path) -> None:
    data = read_pope(write_pope_layout(tmp_path, images=4))
    assert [s.image.name[-7:] for s in data.train.files] == ["500.jpg", "502.jpg"]
    assert [s.image.name[-7:] for s in data.test.files] == ["501.jpg", "503.jpg"]
    test_items = items(data.test)
    assert len(test_items) == 2 * 3 * 2 and all(i.is_yes_no for i in test_items)
    assert {i.pope for i in test_items} == {"random", "popular", "adversarial"}
    said_yes = [True] * len(test_items)  # always "yes": accuracy 0.5, recall 1, yes-ratio 1
    scores = pope_scores(test_items, said_yes)
    assert set(scores["pope"]) == {"random", "popular", "adversarial"}
    assert scores["pope_accuracy"] == 0.5 and scores["pope_recall"] == 1.0 and scores["pope_yes_ratio"] == 1.0


def test_pope_bad_line_names_the_file_and_line(tmp_path: Path) -> None:
    write_pope_layout(tmp_path)
    path = tmp_path / "pope" / "coco_pope_popular.json"
    path.write_text(path.read_text() + '{"image": "x.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(EvalDataError, match=r"coco_pope_popular\.json:9: lacks image, text or a yes/no label"):
        read_pope(tmp_path)


def test_pope_missing_kind_file_is_an_error_naming_it(tmp_path: Path) -> None:
    write_pope_layout(tmp_path)
    (tmp_path / "pope" / "coco_pope_adversarial.json").unlink()
    with pytest.raises(EvalDataError, match=r"coco_pope_adversarial\.json: missing"):
        read_pope(tmp_path)


@pytest.mark.parametrize(("reader", "dirname"), [(read_gqa, "gqa"), (read_vqav2, "vqav2"), (read_pope, "pope")])
def test_absent_vqa_dataset_is_not_found_at_its_path(tmp_path: Path, reader, dirname: str) -> None:
    with pytest.raises(DatasetNotFound, match=f"not found at {tmp_path / dirname}"):
        reader(tmp_path)
