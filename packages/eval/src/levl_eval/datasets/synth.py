"""What a synthetic world (`levl-data synth`) stores for the dense, robustness, retrieval and VQA
protocols; each protocol builds its task from it in its own `protocols/<name>/synth.py`.

The eval splits store per sample a class label, `mask.png` (0 = background, 1 + class index:
every pixel is labelled, nothing is void), `mixed_same.jpg` / `mixed_rand.jpg` (the same
foreground on a background of the class's own family / of another class's family) and the
caption, and the json `qa` (attribute, count and POPE-style existence questions; the manifest
lists their answer vocabulary as `labels.answers`). A world written without those members (an older or hand-made one) lacks the task:
the planner reports it skipped instead of failing.
"""

from __future__ import annotations

from levl_eval.errors import DatasetNotFound
from levl_eval.featureset import EvalSplit


def require_members(split: EvalSplit, members: list[str]) -> None:
    """Skip (DatasetNotFound) unless the split's manifest lists every extra member."""
    have = set(split.manifest.members.get("extra", []))
    missing = [member for member in members if member not in have]
    if missing:
        raise DatasetNotFound(f"{split.manifest.path} (member {missing[0]!r})")
