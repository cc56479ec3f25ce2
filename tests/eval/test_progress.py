"""Feature extraction's progress bar: counted in batches of the split, labelled, and silent when
stderr is not a terminal (logs of batch jobs stay free of bar redraws)."""

from __future__ import annotations

import io
import sys

import pytest

from levl_eval.features import progress
from levl_eval.featureset import EvalSplit, FileSample


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _split(tmp_path, count: int) -> EvalSplit:
    return EvalSplit("val", files=tuple(FileSample(tmp_path / f"{i}.png", label=0)
                                        for i in range(count)))


def _drain(split: EvalSplit, batches: int, desc: str = "") -> list[dict]:
    return list(progress(split, iter([{"n": i} for i in range(batches)]), 2, desc))


def test_bar_counts_batches_of_the_split_on_a_terminal(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _drain(_split(tmp_path, 5), 3, desc="imagenet val") == [{"n": 0}, {"n": 1}, {"n": 2}]
    shown = terminal.getvalue()
    assert "imagenet val" in shown and "3/3" in shown and "batch" in shown
    assert "0/3" in shown  # the total is known before the first batch: 5 files / batch 2


@pytest.mark.parametrize("desc, label", [("", "val"), ("ade20k train", "ade20k train")])
def test_bar_is_labelled_by_desc_or_split_name(tmp_path, monkeypatch, desc, label):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _drain(_split(tmp_path, 2), 1, desc=desc)
    assert terminal.getvalue().lstrip("\r").startswith(label)


def test_bar_is_silent_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert len(_drain(_split(tmp_path, 4), 2)) == 2
    assert log.getvalue() == ""
