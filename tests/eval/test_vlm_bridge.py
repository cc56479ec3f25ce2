"""The vlm protocol's bridge under a tiny random Llama: it learns from informative patch
tokens (and not from noise), only the bridge's weights change, and its budget follows the
dataset and is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.errors import EvalError
from levl_eval.features.types import PatchFeatures
from levl_eval.protocols.vlm.bridge import Bridge, answer_labels, assemble
from levl_eval.protocols.vlm.data import VQAData
from levl_eval.protocols.vlm.items import PROMPT, QAItem, item_tokens, split_items
from levl_eval.protocols.vlm.protocol import VLMBackbone
from levl_eval.protocols.vlm.train import VLMSettings, fit_bridge
from levl_eval.testing.llm import tiny_llm
from levl_eval.testing.worlds import StaticFeatures

COLORS = ("red", "green", "blue", "yellow")
SETTINGS = VLMSettings(bridge_hidden=64, lr=3e-3, epochs=12, batch_size=16, max_answer_tokens=3)


def color_qa(color: str, asked: str) -> tuple[dict, ...]:
    exists = "yes" if asked == color else "no"
    return ({"question": "What color is the shape?", "answer": color, "type": "attribute"},
            {"question": f"Is there a {asked} shape in the image?", "answer": exists,
             "type": "exists", "pope": "random"})


def qa_world(num_images: int, informative: bool, seed: int) -> PatchFeatures:
    """Image i has colour c_i; informative tokens hold one-hot(c_i) + noise, else pure noise."""
    generator = torch.Generator().manual_seed(seed)
    colors_N = torch.randint(len(COLORS), (num_images,), generator=generator)
    asked_N = torch.where(torch.rand(num_images, generator=generator) < 0.5, colors_N,
                          torch.randint(len(COLORS), (num_images,), generator=generator))
    tokens_NLD = torch.randn(num_images, 4, 8, generator=generator)
    if informative:
        tokens_NLD[:, :, :len(COLORS)] = 0.1 * tokens_NLD[:, :, :len(COLORS)] + torch.nn.functional.one_hot(
            colors_N, len(COLORS))[:, None].float()
    qa = tuple(color_qa(COLORS[c], COLORS[a]) for c, a in zip(colors_N.tolist(), asked_N.tolist(), strict=True))
    return PatchFeatures(tokens_NLD=tokens_NLD, grid_hw=(2, 2), masks_NHW=torch.zeros(num_images, 0, 0), qa=qa)


def static_source(informative: bool) -> StaticFeatures:
    return StaticFeatures(patches={"train": qa_world(96, informative, 0),
                                   "test": qa_world(48, informative, 1)})


@pytest.fixture(scope="module")
def llm():
    return tiny_llm([PROMPT, *COLORS, "What color is the shape? Is there a shape in the image?"])


def vqa_data() -> VQAData:
    return VQAData("fake", EvalSplit("train"), EvalSplit("test"))


def test_answer_labels_mark_only_answer_tokens(llm) -> None:
    item = QAItem(0, "What color is the shape?", ("red",), "attribute")
    tokens = item_tokens(llm.encode, item, PROMPT, llm.tokenizer.eos_token_id)
    sequences = assemble(llm, torch.zeros(1, 3, llm.width), [tokens.prompt + tokens.answer])
    labels_BT = answer_labels(sequences, [tokens.prompt], [tokens.answer])
    kept = labels_BT[labels_BT != -100].tolist()
    assert kept == tokens.answer == [llm.encode(" red")[0], llm.tokenizer.eos_token_id]
    assert sequences.text_start == 4  # BOS + 3 prefix tokens
    assert labels_BT[0, :sequences.text_start + len(tokens.prompt)].eq(-100).all()


def test_bridge_learns_from_informative_tokens_not_from_noise(llm) -> None:
    protocol = VLMBackbone(SETTINGS, llm=llm)
    informative = protocol.run(static_source(True), vqa_data())
    noise = protocol.run(static_source(False), vqa_data())
    assert informative["train_loss_last"] < informative["train_loss_first"]
    assert informative["vqa_accuracy"] >= 0.8
    assert informative["vqa_accuracy"] > noise["vqa_accuracy"] + 0.3
    assert informative["pope"]["random"]["accuracy"] > noise["pope"]["random"]["accuracy"]
    assert informative["exact_match"] == informative["vqa_accuracy"]  # one answer = 10 humans
    assert informative["settings"]["llm"] == "tiny-llama"
    assert informative["data"]["test"]["by_type"] == {"attribute": 48, "exists": 48}


def test_only_the_bridge_changes(llm) -> None:
    before = {name: value.clone() for name, value in llm.model.state_dict().items()}
    train = qa_world(32, True, 0)
    items = split_items(train.qa, "train", None)
    encoded = [item_tokens(llm.encode, item, PROMPT, llm.tokenizer.eos_token_id) for item in items]
    settings = VLMSettings(bridge_hidden=16, epochs=1, batch_size=8)
    fitted = fit_bridge(llm, train.tokens_NLD, items, encoded, settings)
    after = llm.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(p.requires_grad for p in llm.model.parameters())
    init = Bridge(8, 16, llm.width, settings.seed).state_dict()
    assert all(not torch.equal(init[name], value) for name, value in fitted.bridge.state_dict().items())
    assert len(fitted.losses) == 8


def test_bridge_budget_defaults_follow_the_dataset() -> None:
    synth, real = VLMSettings().for_dataset("synth"), VLMSettings().for_dataset("gqa")
    assert (synth.train_images, synth.max_train_questions, synth.epochs) == (None, None, 1)
    assert (real.train_images, real.max_train_questions, real.epochs) == (20_000, None, 1)
    asked = VLMSettings(epochs=3, train_images=500, max_train_questions=40)
    assert (asked.for_dataset("vqav2").train_images, asked.for_dataset("vqav2").epochs) == (500, 3)
    assert asked.for_dataset("synth").train_images is None  # read whole from its manifest
    assert VLMSettings().budget_origin("gqa") == "a real dataset's default"
    assert asked.budget_origin("synth") == ("the synthetic world's default, except "
                                            "max_train_questions, epochs as set")


def test_budget_below_one_is_one_line() -> None:
    with pytest.raises(EvalError, match=r"vlm setting train_images=0: must be at least 1"):
        VLMSettings(train_images=0)


def test_budget_caps_train_images_before_extraction_and_is_recorded(llm) -> None:
    """96 listed train images, a budget of 24: only the 24 are asked for, and the report says so."""
    train = EvalSplit("train", files=tuple(FileSample(Path(f"{i}.jpg")) for i in range(96)))
    source = StaticFeatures(patches={"train[24 of 96 images]": qa_world(24, True, 0),
                                     "test": qa_world(8, True, 1)})
    settings = VLMSettings(bridge_hidden=16, batch_size=8, max_answer_tokens=2, train_images=24)
    result = VLMBackbone(settings, llm=llm).run(source, VQAData("fake", train, EvalSplit("test")))
    assert "patches:train[24 of 96 images]" in source.calls and "patches:train" not in source.calls
    assert result["data"]["train"]["split"] == "train[24 of 96 images]"
    assert result["data"]["train"]["questions"] == 48 and result["train_steps"] == 6  # 1 epoch
    recorded = result["settings"]
    assert (recorded["train_images"], recorded["max_train_questions"], recorded["epochs"]) == (24, None, 1)
    assert recorded["budget"] == "a real dataset's default, except train_images as set"


def test_tasks_training_on_the_same_questions_share_one_bridge_per_encoder(llm, monkeypatch) -> None:
    """VQAv2 and POPE both train on VQAv2's train2014 questions: one protocol object trains that
    bridge once per encoder, and each task's numbers are those of a bridge trained for it alone."""
    import levl_eval.protocols.vlm.protocol as vlm_protocol

    fits = []
    monkeypatch.setattr(vlm_protocol, "fit_bridge", lambda *a, **k: fits.append(1) or fit_bridge(*a, **k))
    settings = VLMSettings(bridge_hidden=16, epochs=2, batch_size=16, max_answer_tokens=2)
    source, other = static_source(True), static_source(True)
    tasks = [VQAData(name, EvalSplit("train"), EvalSplit("test")) for name in ("vqav2", "pope")]
    shared = VLMBackbone(settings, llm=llm)
    together = [shared.run(source, task) for task in tasks]
    assert len(fits) == 1 and source.calls.count("patches:train") == 1
    alone = [VLMBackbone(settings, llm=llm).run(source, task) for task in tasks]
    assert len(fits) == 3
    assert together[1]["data"]["train"].pop("bridge_trained_for") == "vqav2"
    assert together == alone  # bitwise: every score, loss and size
    shared.run(other, tasks[0])  # another encoder: its own bridge
    assert len(fits) == 4
