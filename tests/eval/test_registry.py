"""Protocols are chosen by name."""

from __future__ import annotations

import pytest

from levl_eval.errors import EvalError
from levl_eval.protocols.background.protocol import BackgroundRobustness
from levl_eval.protocols.depth.protocol import LinearDepth
from levl_eval.protocols.linear.protocol import LinearProbe
from levl_eval.protocols.registry import OPT_IN, PROTOCOLS, build_protocol
from levl_eval.protocols.retrieval.protocol import Retrieval
from levl_eval.protocols.segmentation.protocol import LinearSegmentation
from levl_eval.protocols.vlm.protocol import VLMBackbone
from levl_eval.protocols.zeroshot.protocol import ZeroShot


def test_registry_maps_names_to_classes() -> None:
    assert {"zeroshot": ZeroShot, "linear": LinearProbe, "segmentation": LinearSegmentation,
            "depth": LinearDepth, "background": BackgroundRobustness, "retrieval": Retrieval,
            "vlm": VLMBackbone} == PROTOCOLS
    for name, cls in PROTOCOLS.items():
        assert cls.name == name
        assert build_protocol(name).name == name


def test_unknown_protocol_is_a_one_line_error() -> None:
    with pytest.raises(EvalError, match="unknown protocol 'knn'.*zeroshot, linear, segmentation, depth, background, retrieval, vlm"):
        build_protocol("knn")


def test_vlm_is_opt_in_for_all() -> None:
    from levl_eval.runner import EvalOptions

    assert {"vlm"} == OPT_IN
    assert "vlm" not in EvalOptions().protocols
