"""The background task of a synthetic world (`levl-data synth`; levl_eval.data.world says
what it stores)."""

from __future__ import annotations

from levl_eval.data.splits import EvalData, EvalSplit
from levl_eval.data.world import require_members
from levl_eval.protocols.background.data import BackgroundData

VARIANT_MEMBERS = {"mixed_same": "mixed_same.jpg", "mixed_rand": "mixed_rand.jpg"}


def synth_background(data: EvalData) -> BackgroundData:
    """Probe on eval-train originals; eval-test as stored and with each swapped background."""
    require_members(data.test, list(VARIANT_MEMBERS.values()))
    variants = {"original": data.test}
    for name, member in VARIANT_MEMBERS.items():
        variants[name] = EvalSplit(f"{data.test.name}/{name}", data.test.manifest, image_member=member)
    return BackgroundData("synth", data.train, variants, data.classes,
                          train_rule="eval-train originals (80 % on the class's typical background)",
                          root=data.root)
