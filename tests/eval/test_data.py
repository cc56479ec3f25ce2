"""The eval task is read from a synth dir; unusable splits are refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from levl_eval.data.world import load_eval_data
from levl_eval.errors import EvalDataError, EvalError
from levl_eval.features.types import ClassTextFeatures, SplitFeatures
from levl_eval.protocols.zeroshot.protocol import ZeroShot
from levl_eval.testing.worlds import StaticFeatures, static_data


def _edited_world(eval_world: Path, tmp_path: Path, split: str, edit) -> Path:
    world = tmp_path / "world"
    shutil.copytree(eval_world, world)
    manifest = world / split / "manifest.json"
    data = json.loads(manifest.read_text())
    edit(data["labels"])
    manifest.write_text(json.dumps(data))  # labels are outside the fingerprint: still valid
    return world


def test_reads_classes_prompts_and_both_splits(eval_world: Path) -> None:
    data = load_eval_data(eval_world)
    assert data.classes == ("shape0", "shape1", "shape2", "shape3")
    assert data.prompts == ("a photo of a {}.", "a {}.")
    assert (data.train.name, data.test.name) == ("eval-train", "eval-test")
    assert data.describe()["test"]["num_samples"] == 24


def test_missing_prompts_are_refused(eval_world: Path, tmp_path: Path) -> None:
    world = _edited_world(eval_world, tmp_path, "eval-test", lambda labels: labels.pop("prompts"))
    with pytest.raises(EvalDataError, match="eval-test/manifest.json: no labels.prompts"):
        load_eval_data(world)


def test_splits_with_different_classes_are_refused(eval_world: Path, tmp_path: Path) -> None:
    world = _edited_world(eval_world, tmp_path, "eval-train",
                          lambda labels: labels["classes"].reverse())
    with pytest.raises(EvalDataError, match="different labels.classes"):
        load_eval_data(world)


def test_labels_outside_the_class_list_are_refused() -> None:
    feats_NE = torch.randn(3, 4)
    images = SplitFeatures(feats_NE, feats_NE, feats_NE, labels_N=torch.tensor([0, 1, 5]))
    text = ClassTextFeatures(torch.randn(2, 1, 4), torch.randn(2, 1, 4))
    source = StaticFeatures(images={"eval-test": images}, text=text)
    with pytest.raises(EvalError, match="labels span 0..5 but the manifest lists 2 classes"):
        ZeroShot().run(source, static_data(2))
