"""Question–answer splits of the VQA readers (GQA, VQAv2, POPE): one sample per image holding
all its questions, so each image's patch tokens are extracted and cached once.

The `vlm` protocol caches every image's patch tokens (float16; ~0.3 MB per image at ViT-B/16).
A reader lists every training image: how many of them the bridge trains on is its budget
(`VLMSettings.train_images`), applied by `capped_qa_split` when the settings are known. A test
split is capped here when it is larger than scoring needs (VQAv2 val); the rule lands in the
report.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.datasets.files import check_images_exist, evenly_spaced
from levl_eval.errors import EvalError

TEST_IMAGE_CAP = 2000
BUDGET_RULE = "the bridge trains on the questions of settings.train_images of them, evenly spaced"


def qa_split(name: str, questions: dict[Path, list[dict]], cap: int | None, listed_in: Path) -> EvalSplit:
    """The split of (at most `cap`) images in sorted order, each with its questions in file order."""
    images = evenly_spaced(sorted(questions), cap)
    check_images_exist(images, listed_in)
    return EvalSplit(name, files=tuple(FileSample(image=image, qa=tuple(questions[image]))
                                       for image in images))


def capped_qa_split(split: EvalSplit, cap: int | None) -> EvalSplit:
    """At most `cap` of the split's images, evenly spaced (`evenly_spaced`), with all their
    questions; the split unchanged when it has no more. Cut before extraction, so the images
    left out are never read; the cut split has its own name, so an encoder never serves the
    whole split's features for it. A shard manifest is read whole and cannot be cut."""
    if cap is not None and split.manifest is not None:
        raise EvalError(f"split {split.name}: a vlm train_images cap applies to a real dataset's "
                        "list of files, not to a shard manifest (the synthetic world); drop it")
    if cap is None or len(split.files) <= cap:
        return split
    return replace(split, name=f"{split.name}[{cap} of {len(split.files)} images]",
                   files=tuple(evenly_spaced(split.files, cap)))


def cap_rule(cap: int | None, total: int) -> str:
    if cap is None or total <= cap:
        return f"every image ({total})"
    return f"{cap} of {total} images, evenly spaced over the sorted image ids, with all their questions"
