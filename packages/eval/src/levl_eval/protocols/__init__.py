"""Evaluation protocols, chosen by name (one module and one class per protocol)."""

from __future__ import annotations

from levl_eval.errors import EvalError
from levl_eval.protocols.background import BackgroundRobustness
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.linear import LinearProbe, LinearProbeSettings
from levl_eval.protocols.retrieval import Retrieval
from levl_eval.protocols.segmentation import LinearSegmentation, SegmentationSettings
from levl_eval.protocols.zeroshot import ZeroShot

PROTOCOLS: dict[str, type[EvalProtocol]] = {
    "zeroshot": ZeroShot,
    "linear": LinearProbe,
    "segmentation": LinearSegmentation,
    "background": BackgroundRobustness,
    "retrieval": Retrieval,
}


def build_protocol(name: str, *, device: str = "cpu") -> EvalProtocol:
    """The protocol called `name`, set up to run its own training (if any) on `device`."""
    if name not in PROTOCOLS:
        raise EvalError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name](device=device)


__all__ = [
    "PROTOCOLS",
    "BackgroundRobustness",
    "EvalProtocol",
    "LinearProbe",
    "LinearProbeSettings",
    "LinearSegmentation",
    "Retrieval",
    "SegmentationSettings",
    "ZeroShot",
    "build_protocol",
]
