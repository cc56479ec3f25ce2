"""Question–answer splits of the VQA readers (GQA, VQAv2, POPE): one sample per image holding
all its questions, so each image's patch tokens are extracted and cached once.

The `vlm` protocol caches every image's patch tokens (float16; ~0.3 MB per image at ViT-B/16),
so a reader keeps at most a capped number of images per split, evenly spaced over the sorted
image ids, with all of their questions; the rule lands in the report.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.datasets.files import check_images_exist, evenly_spaced
from levl_eval.featureset import EvalSplit, FileSample

TRAIN_IMAGE_CAP = 4000  # ~1.2 GB of ViT-B/16 patch tokens; ~20k (VQAv2) to ~50k (GQA) questions
TEST_IMAGE_CAP = 2000


def qa_split(name: str, questions: dict[Path, list[dict]], cap: int | None, listed_in: Path) -> EvalSplit:
    """The split of (at most `cap`) images in sorted order, each with its questions in file order."""
    images = evenly_spaced(sorted(questions), cap)
    check_images_exist(images, listed_in)
    return EvalSplit(name, files=tuple(FileSample(image=image, qa=tuple(questions[image]))
                                       for image in images))


def cap_rule(cap: int | None, total: int) -> str:
    if cap is None or total <= cap:
        return f"every image ({total})"
    return f"{cap} of {total} images, evenly spaced over the sorted image ids, with all their questions"
