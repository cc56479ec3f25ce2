"""What an evaluation reads: its splits, and the task data all protocols build on.

A split is either a levl shard manifest (the synthetic world) or a list of files on disk (the
standard layouts of ADE20K, ImageNet-9 and Karpathy caption splits, see `levl_eval.datasets`).
`EvalData` is a labelled classification task (the synthetic world's, `levl_eval.data.world`);
`ClassificationData` is what the classification protocols (zeroshot, linear) run on from a real
dataset. Each other protocol's task data lives in its folder (`levl_eval.protocols.<name>.data`);
all of them describe themselves for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileSample:
    """One sample of a folder dataset: an image file and what it is labelled with."""

    image: Path
    label: int = -1
    mask: Path | None = None
    captions: tuple[str, ...] = ()
    qa: tuple[dict, ...] = ()  # question/answer dicts (levl_eval.protocols.vlm.items), for the vlm protocol


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation split: a levl_data Manifest, a tuple of files, or neither (in-memory data).

    `name` keys the encoder's feature cache, so two splits with different pixels (a manifest
    read through another `image_member`) must have different names. `mask_member` names the
    manifest member holding per-pixel labels; `reduce_zero_label` maps mask value 0 to void
    (255) and shifts the others down by one (ADE20K's convention); `label_map`, a 256-entry
    lookup table, maps stored ids to contiguous ones (COCO-Stuff's 182 ids to 171 classes).
    `mask_kind` says what the per-pixel maps hold: `labels` (8-bit class ids), `depth_mm`
    (16-bit millimetres, read as float metres, 0 = invalid) or `depth_mm_eigen` (the same with
    pixels outside Eigen's NYUv2 evaluation crop made invalid; `levl_eval.protocols.depth.maps`).
    """

    name: str
    manifest: Any = None
    image_member: str | None = None
    mask_member: str | None = None
    files: tuple[FileSample, ...] = ()
    reduce_zero_label: bool = False
    label_map: tuple[int, ...] | None = None
    mask_kind: str = "labels"

    def describe(self) -> dict:
        """The split's identity for a report: where it came from and which version it is."""
        if self.files:
            return {"name": self.name, "num_samples": len(self.files),
                    "first_image": str(self.files[0].image)}
        if self.manifest is None:
            return {"name": self.name}
        described = {
            "name": self.name,
            "manifest": str(self.manifest.path),
            "dataset": self.manifest.name,
            "fingerprint": self.manifest.fingerprint,
            "num_samples": self.manifest.num_samples,
        }
        if self.image_member:
            described["image_member"] = self.image_member
        return described


@dataclass(frozen=True)
class EvalData:
    """A labelled classification task: a train split (for probes), a test split, class names and
    the prompt templates zero-shot turns them into texts with.

    `curated_classes`, when given, are other names of the same classes, written for zero-shot
    text: CLIP's curated ImageNet names say "kite (bird of prey)" and "rooster" where WordNet's
    first lemmas say "kite" and "cock". Zero-shot prefers them unless asked for the dataset's
    own (`ZeroShot(class_names="dataset")`), so published ImageNet numbers compare.
    """

    train: EvalSplit
    test: EvalSplit
    classes: tuple[str, ...]
    prompts: tuple[str, ...] = ("a photo of a {}.",)
    root: Path | None = None
    curated_classes: tuple[str, ...] = ()
    curated_source: str = ""  # where the curated names come from, for the report

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {
            "root": None if self.root is None else str(self.root),
            "train": self.train.describe(),
            "test": self.test.describe(),
            "classes": list(self.classes),
            "prompts": list(self.prompts),
            **({"curated_classes": list(self.curated_classes), "curated_source": self.curated_source}
               if self.curated_classes else {}),
        }


def root_text(root: Path | None) -> str | None:
    """A task's dataset root as the report writes it (None when it has none)."""
    return None if root is None else str(root)


@dataclass(frozen=True)
class ClassificationData(EvalData):
    """A real dataset's EvalData (zeroshot, linear) that also names itself and says how its probe
    training split was chosen (`train_rule`, e.g. a per-class cap), for the report."""

    dataset: str = ""
    train_rule: str = ""
    notes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"dataset": self.dataset, **super().describe(), "train_rule": self.train_rule,
                **self.notes}
