"""levl-eval's progress bars: feature extraction counts the split's images (rate in img/s), head
training counts its optimisation steps (running loss, samples/s); both are labelled, silent when
stderr is not a terminal (logs of batch jobs stay free of bar redraws), and leave the numbers
untouched."""

from __future__ import annotations

import io
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.features.extract import progress
from levl_eval.heads import HeadTraining, fit_head, seeded_linear


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _split(tmp_path, count: int) -> EvalSplit:
    return EvalSplit("val", files=tuple(FileSample(tmp_path / f"{i}.png", label=0)
                                        for i in range(count)))


def _batches(sizes: list[int]) -> list[dict]:
    return [{"n": i, "labels": torch.zeros(size, dtype=torch.long)} for i, size in enumerate(sizes)]


def _drain(split: EvalSplit, batches: list[dict], desc: str = "") -> list[dict]:
    return list(progress(split, iter(batches), desc))


def test_bar_counts_images_of_the_split_at_a_rate_in_img_per_s(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    batches = _batches([2, 2, 1])
    assert [b["n"] for b in _drain(_split(tmp_path, 5), batches, desc="imagenet val")] == [0, 1, 2]
    shown = terminal.getvalue()
    assert "imagenet val" in shown and "5/5" in shown
    assert "0/5" in shown  # the total (in images) is known before the first batch
    assert re.search(r"[\d.]+img/s", shown), shown


def test_bar_counts_skipped_images_too(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    batches = _batches([1, 0])
    batches[0]["skipped"], batches[1]["skipped"] = {"decode": 1}, {"decode": 1, "empty": 1}
    _drain(_split(tmp_path, 4), batches)
    assert "4/4" in terminal.getvalue()


@pytest.mark.parametrize("desc, label", [("", "val"), ("ade20k train", "ade20k train")])
def test_bar_is_labelled_by_desc_or_split_name(tmp_path, monkeypatch, desc, label):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _drain(_split(tmp_path, 2), _batches([2]), desc=desc)
    assert terminal.getvalue().lstrip("\r").startswith(label)


def test_bar_is_silent_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert len(_drain(_split(tmp_path, 4), _batches([2, 2]))) == 2
    assert log.getvalue() == ""


_TRAINING = HeadTraining(lr=1e-2, weight_decay=1e-4, batch_size=4, epochs=3, seed=7,
                         schedule="cosine")  # 10 samples: 3 batches an epoch, 9 steps


def _fit(monkeypatch, stderr: io.StringIO, training: HeadTraining = _TRAINING) -> tuple:
    monkeypatch.setattr(sys, "stderr", stderr)
    generator = torch.Generator().manual_seed(0)
    x_ND, labels_N = torch.randn(10, 6, generator=generator), torch.arange(10) % 3
    head = seeded_linear(6, 3, seed=3)
    losses = fit_head(head, 10, lambda b: F.cross_entropy(head(x_ND[b]), labels_N[b]), training,
                      desc="linear probe")
    return losses, head.state_dict()


def test_head_bar_reaches_its_total_in_steps_with_loss_and_samples_per_s(monkeypatch):
    terminal = _Terminal()
    _fit(monkeypatch, terminal)
    shown = terminal.getvalue()
    assert shown.lstrip("\r").startswith("linear probe")
    assert "0/9" in shown and "9/9" in shown and "step" in shown
    assert "loss=" in shown and "samples/s" in shown


def test_head_bar_total_is_capped_by_max_steps(monkeypatch):
    terminal = _Terminal()
    capped = HeadTraining(lr=1e-2, weight_decay=0.0, batch_size=4, epochs=3, seed=7, max_steps=5)
    assert len(_fit(monkeypatch, terminal, capped)[0]) == 5
    assert "5/5" in terminal.getvalue()


def test_head_bar_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    log = io.StringIO()
    assert len(_fit(monkeypatch, log)[0]) == 9
    assert log.getvalue() == ""


def test_head_training_is_identical_with_and_without_a_terminal(monkeypatch):
    torch.manual_seed(123)
    losses_log, state_log = _fit(monkeypatch, io.StringIO())
    after_log = torch.rand(1)
    torch.manual_seed(123)
    losses_tty, state_tty = _fit(monkeypatch, _Terminal())
    assert losses_tty == losses_log
    assert all(torch.equal(state_tty[k], state_log[k]) for k in state_log)
    assert torch.equal(torch.rand(1), after_log)  # the bar drew nothing from the global RNG
