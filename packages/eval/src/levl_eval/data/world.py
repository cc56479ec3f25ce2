"""The synthetic world (`levl-data synth`): its classification task, and what it stores for the
other protocols.

The evaluation task of a synthetic-world directory is eval-train/ + eval-test/ and their labels.
Both splits must name the same classes in the same order (the label ints index that list), so a
probe trained on one split is scored against the same classes on the other.

For the dense, robustness, retrieval and VQA protocols each protocol builds its task from the
world in its own `protocols/<name>/synth.py`. The eval splits store per sample a class label,
`mask.png` (0 = background, 1 + class index: every pixel is labelled, nothing is void),
`mixed_same.jpg` / `mixed_rand.jpg` (the same foreground on a background of the class's own
family / of another class's family) and the caption, and the json `qa` (attribute, count and
POPE-style existence questions; the manifest lists their answer vocabulary as
`labels.answers`). A world written without those members (an older or hand-made one) lacks the
task: the planner reports it skipped instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from levl_data.manifest import MANIFEST_NAME, read_manifest
from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.datasets.prompts import template_problem
from levl_eval.errors import DatasetNotFound, EvalDataError

TRAIN_SPLIT, TEST_SPLIT = "eval-train", "eval-test"


def split_labels(manifest, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(classes, prompts) of one split's manifest; zero-shot needs both."""
    labels = manifest.labels or {}
    classes, prompts = labels.get("classes"), labels.get("prompts")
    if not classes:
        raise EvalDataError(
            f"manifest {manifest.path}: no labels.classes; {split} must be a labelled eval split"
        )
    if not prompts:
        raise EvalDataError(
            f"manifest {manifest.path}: no labels.prompts; add prompt templates such as "
            '"a photo of a {}."'
        )
    for index, prompt in enumerate(prompts):
        problem = template_problem(prompt) if isinstance(prompt, str) else "is not a string"
        if problem:
            raise EvalDataError(f"manifest {manifest.path}: labels.prompts[{index}] {prompt!r} "
                                f"{problem}; write templates such as \"a photo of a {{}}.\"")
    return tuple(classes), tuple(prompts)


def load_eval_data(data_dir: str | Path) -> EvalData:
    """Read and check `data_dir/eval-train/manifest.json` and `data_dir/eval-test/manifest.json`."""
    root = Path(data_dir).expanduser().absolute()
    if not root.is_dir():
        raise EvalDataError(
            f"--data {root}: no such directory (pass a `levl-data synth --out` directory)"
        )
    manifests = {}
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        if not (root / split / MANIFEST_NAME).is_file():
            raise EvalDataError(
                f"--data {root}: missing {split}/{MANIFEST_NAME} (pass a `levl-data synth --out` "
                "directory, which holds eval-train/ and eval-test/)"
            )
        manifests[split] = read_manifest(root / split)
    classes, prompts = split_labels(manifests[TEST_SPLIT], TEST_SPLIT)
    train_classes, _ = split_labels(manifests[TRAIN_SPLIT], TRAIN_SPLIT)
    if train_classes != classes:
        raise EvalDataError(
            f"--data {root}: eval-train and eval-test list different labels.classes; "
            "regenerate both splits from one world"
        )
    return EvalData(
        train=EvalSplit(TRAIN_SPLIT, manifests[TRAIN_SPLIT]),
        test=EvalSplit(TEST_SPLIT, manifests[TEST_SPLIT]),
        classes=classes,
        prompts=prompts,
        root=root,
    )


def require_members(split: EvalSplit, members: list[str]) -> None:
    """Skip (DatasetNotFound) unless the split's manifest lists every extra member."""
    have = set(split.manifest.members.get("extra", []))
    missing = [member for member in members if member not in have]
    if missing:
        raise DatasetNotFound(f"{split.manifest.path} (member {missing[0]!r})")
