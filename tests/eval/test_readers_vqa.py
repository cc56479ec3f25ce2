"""VQA readers (GQA, VQAv2, POPE): tiny trees in each official layout become the vlm protocol's
VQAData (one sample per image with all its questions), each scored by its own metric; absent
is 'not found'; malformed is one error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets import read_gqa, read_pope, read_vqav2
from levl_eval.datasets.fixtures import (
    write_gqa_layout,
    write_jpeg,
    write_pope_layout,
    write_vqav2_layout,
)
from levl_eval.datasets.qa_split import capped_qa_split
from levl_eval.errors import DatasetNotFound, EvalDataError, EvalError
from levl_eval.protocols.registry import REAL_DATASETS
from levl_eval.protocols.vlm.items import split_items
from levl_eval.protocols.vlm.scores import open_scores, pope_scores


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
    assert data.describe()["train_rule"] == ("train_balanced: every image (4); the bridge trains on "
                                             "the questions of settings.train_images of them, evenly spaced")


def test_gqa_train_images_are_capped_evenly_by_the_bridge_budget(tmp_path: Path) -> None:
    data = read_gqa(write_gqa_layout(tmp_path, train=5, test=1))
    assert len(data.train.files) == 5  # the reader lists every image; the budget picks
    capped = capped_qa_split(data.train, 2)
    assert [s.image.name for s in capped.files] == ["2370000.jpg", "2370002.jpg"]
    assert all(len(s.qa) == 2 for s in capped.files)
    assert capped.name == "gqa/train_balanced[2 of 5 images]"  # never served the whole split's features
    assert capped_qa_split(data.train, 5) is data.train and capped_qa_split(data.train, None) is data.train


def test_train_images_cap_on_a_shard_manifest_is_one_line() -> None:
    with pytest.raises(EvalError, match=r"split eval-train: a vlm train_images cap applies to a real "
                                        r"dataset's list of files, not to a shard manifest"):
        capped_qa_split(EvalSplit("eval-train", manifest=object()), 100)


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
    # 8 of 10 humans say "red" ("Red!" becomes "Red ": the official script neither lower-cases
    # nor strips a human's answer): accuracy 1; "purple" is one human: 0.3 officially, 1/3 simply.
    scores = open_scores(items(data.test), ["red", "purple"])
    assert scores["vqa_accuracy"] == pytest.approx((1 + 0.3) / 2)
    assert scores["vqa_accuracy_simple"] == pytest.approx((1 + 1 / 3) / 2)


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


def question_pairs(split) -> set[tuple[str, str]]:
    """(image file, question) of every question of a split."""
    return {(sample.image.name, qa["question"]) for sample in split.files for qa in sample.qa}


def test_pope_bridge_trains_on_vqav2_train_questions_never_on_popes_own(tmp_path: Path) -> None:
    write_vqav2_layout(tmp_path, train=3, test=2)
    data = read_pope(write_pope_layout(tmp_path, images=4))
    assert data.train == read_vqav2(tmp_path).train  # the vqav2 task's training split, features shared
    assert data.train.name == "vqav2/train2014"
    assert all(s.image.parent == tmp_path / "coco" / "train2014" for s in data.train.files)
    train_items = items(data.train)
    assert len(train_items) == 3 and not any(i.is_yes_no or i.pope for i in train_items)
    assert question_pairs(data.train).isdisjoint(question_pairs(data.test))
    assert {s.image for s in data.train.files}.isdisjoint(s.image for s in data.test.files)
    assert data.notes["train_rule"].startswith("VQAv2 train2014: every image (3)")
    assert data.notes["train_rule"].endswith("0 POPE image(s) dropped from it")


def test_pope_scores_every_question_per_kind(tmp_path: Path) -> None:
    write_vqav2_layout(tmp_path)
    data = read_pope(write_pope_layout(tmp_path, images=4))
    assert data.test.name == "pope/val2014"
    assert [s.image.name[-7:] for s in data.test.files] == ["500.jpg", "501.jpg", "502.jpg", "503.jpg"]
    test_items = items(data.test)
    assert len(test_items) == 4 * 3 * 2 and all(i.is_yes_no for i in test_items)
    assert {i.pope for i in test_items} == {"random", "popular", "adversarial"}
    said_yes = [True] * len(test_items)  # always "yes": accuracy 0.5, recall 1, yes-ratio 1
    scores = pope_scores(test_items, said_yes)
    assert set(scores["pope"]) == {"random", "popular", "adversarial"}
    assert scores["pope_accuracy"] == 0.5 and scores["pope_recall"] == 1.0 and scores["pope_yes_ratio"] == 1.0


def test_a_vqav2_train_image_that_is_a_pope_image_is_dropped(tmp_path: Path) -> None:
    write_vqav2_layout(tmp_path, train=3)
    write_pope_layout(tmp_path, images=4)
    questions = tmp_path / "vqav2" / "v2_OpenEnded_mscoco_train2014_questions.json"
    annotations = tmp_path / "vqav2" / "v2_mscoco_train2014_annotations.json"
    qs, anns = json.loads(questions.read_text()), json.loads(annotations.read_text())
    qs["questions"].append({"image_id": 501, "question": "Is there a person in the image?", "question_id": 5010})
    anns["annotations"].append({"question_id": 5010, "image_id": 501, "answer_type": "yes/no",
                                "multiple_choice_answer": "yes",
                                "answers": [{"answer": "yes", "answer_id": j + 1} for j in range(10)]})
    questions.write_text(json.dumps(qs))
    annotations.write_text(json.dumps(anns))
    write_jpeg(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000501.jpg", 0, 0)
    assert len(read_vqav2(tmp_path).train.files) == 4  # the vqav2 task keeps it
    data = read_pope(tmp_path)
    assert data.train.name == "vqav2/train2014-without-pope-images"
    assert [s.image.name[-7:] for s in data.train.files] == ["100.jpg", "101.jpg", "102.jpg"]
    assert data.notes["train_rule"].endswith("1 POPE image(s) dropped from it")


def test_pope_without_vqav2_is_not_found_saying_why(tmp_path: Path) -> None:
    write_pope_layout(tmp_path)
    with pytest.raises(DatasetNotFound, match=r"not found at .*vqav2 \(POPE's bridge trains on VQAv2's "
                                              r"train2014 questions, never on POPE's own\)"):
        read_pope(tmp_path)


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
