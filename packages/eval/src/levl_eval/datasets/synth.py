"""The dense, robustness and retrieval tasks of a synthetic world (`levl-data synth`).

The eval splits store per sample a class label, `mask.png` (0 = background, 1 + class index:
every pixel is labelled, nothing is void), `mixed_same.jpg` / `mixed_rand.jpg` (the same
foreground on a background of the class's own family / of another class's family) and the
caption, and the json `qa` (attribute, count and POPE-style existence questions; the manifest
lists their answer vocabulary as `labels.answers`). A world written without those members (an older or hand-made one) lacks the task:
the planner reports it skipped instead of failing.
"""

from __future__ import annotations

from levl_eval.errors import DatasetNotFound
from levl_eval.featureset import EvalData, EvalSplit
from levl_eval.taskdata import BackgroundData, DepthData, RetrievalData, SegmentationData, VQAData

MASK_MEMBER = "mask.png"
VARIANT_MEMBERS = {"mixed_same": "mixed_same.jpg", "mixed_rand": "mixed_rand.jpg"}


def require_members(split: EvalSplit, members: list[str]) -> None:
    """Skip (DatasetNotFound) unless the split's manifest lists every extra member."""
    have = set(split.manifest.members.get("extra", []))
    missing = [member for member in members if member not in have]
    if missing:
        raise DatasetNotFound(f"{split.manifest.path} (member {missing[0]!r})")


def synth_segmentation(data: EvalData) -> SegmentationData:
    """eval-train / eval-test with their masks; classes from `labels.segmentation_classes`."""
    for split in (data.train, data.test):
        require_members(split, [MASK_MEMBER])
    classes = (data.test.manifest.labels or {}).get("segmentation_classes")
    if not classes:
        raise DatasetNotFound(f"{data.test.manifest.path} (labels.segmentation_classes)")

    def with_masks(split: EvalSplit) -> EvalSplit:
        return EvalSplit(f"{split.name}/masks", split.manifest, mask_member=MASK_MEMBER)

    return SegmentationData("synth", with_masks(data.train), with_masks(data.test),
                            tuple(classes), root=data.root)


def synth_depth(data: EvalData) -> DepthData:
    """Never: the synthetic world draws flat scenes without depth, so depth is always skipped."""
    raise DatasetNotFound(f"{data.root} (the synthetic world has no depth maps: depth runs on "
                          "NYU Depth v2, pass --datasets ROOT holding nyu/)")


def synth_background(data: EvalData) -> BackgroundData:
    """Probe on eval-train originals; eval-test as stored and with each swapped background."""
    require_members(data.test, list(VARIANT_MEMBERS.values()))
    variants = {"original": data.test}
    for name, member in VARIANT_MEMBERS.items():
        variants[name] = EvalSplit(f"{data.test.name}/{name}", data.test.manifest, image_member=member)
    return BackgroundData("synth", data.train, variants, data.classes,
                          train_rule="eval-train originals (80 % on the class's typical background)",
                          root=data.root)


def synth_retrieval(data: EvalData) -> RetrievalData:
    """eval-test images against their own captions (one per image)."""
    return RetrievalData("synth", data.test, root=data.root, notes={"captions_per_image": 1})


def synth_vlm(data: EvalData) -> VQAData:
    """eval-train's questions train the bridge, eval-test's score it (a world whose manifest has
    no `labels.answers` predates the QA pairs)."""
    for split in (data.train, data.test):
        if not (split.manifest.labels or {}).get("answers"):
            raise DatasetNotFound(f"{split.manifest.path} (labels.answers: no QA pairs)")
    return VQAData("synth", data.train, data.test, root=data.root,
                   notes={"questions": "attribute, count, exists (POPE random/popular/adversarial)"})
