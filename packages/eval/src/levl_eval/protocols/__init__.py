"""Evaluation protocols, chosen by name (one module and one class per protocol)."""

from __future__ import annotations

from levl_eval.errors import EvalError
from levl_eval.protocols.background import BackgroundRobustness
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.depth import DepthSettings, LinearDepth
from levl_eval.protocols.linear import LinearProbe, LinearProbeSettings
from levl_eval.protocols.retrieval import Retrieval
from levl_eval.protocols.segmentation import LinearSegmentation, SegmentationSettings
from levl_eval.protocols.vlm import VLMBackbone
from levl_eval.protocols.zeroshot import ZeroShot

PROTOCOLS: dict[str, type[EvalProtocol]] = {
    "zeroshot": ZeroShot,
    "linear": LinearProbe,
    "segmentation": LinearSegmentation,
    "depth": LinearDepth,
    "background": BackgroundRobustness,
    "retrieval": Retrieval,
    "vlm": VLMBackbone,
}
# Protocols `levl-eval all` leaves out unless asked for (minutes per encoder on a CPU).
OPT_IN: frozenset[str] = frozenset({"vlm"})


def build_protocol(name: str, *, device: str = "cpu", **options: object) -> EvalProtocol:
    """The protocol called `name`, set up to run its own training (if any) on `device`;
    `options` go to its constructor (e.g. `settings=VLMSettings(...)`)."""
    if name not in PROTOCOLS:
        raise EvalError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name](device=device, **options)


__all__ = [
    "PROTOCOLS",
    "BackgroundRobustness",
    "DepthSettings",
    "EvalProtocol",
    "LinearDepth",
    "LinearProbe",
    "LinearProbeSettings",
    "LinearSegmentation",
    "Retrieval",
    "OPT_IN",
    "SegmentationSettings",
    "VLMBackbone",
    "ZeroShot",
    "build_protocol",
]
