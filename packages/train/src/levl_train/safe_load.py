"""Train state read without running code: every pickle levl reads at resume goes through
`torch.load(weights_only=True)`, DeepSpeed's engine checkpoint included.

A run dir copied from elsewhere is untrusted input, and a pickle can run anything when it is
unpickled. DeepSpeed's `load_checkpoint` unpickles its `*_model_states.pt` and
`*_optim_states.pt` with `weights_only=False`; `WeightsOnlyCheckpointEngine` replaces the load
of its checkpoint engine, allowing only tensors, plain containers and the few plain-data
classes DeepSpeed itself writes into them.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from levl_train.errors import TrainError


def deepspeed_state_globals() -> list:
    """The non-container classes DeepSpeed 0.19 pickles into levl's engine checkpoints (found
    by loading ZeRO 0-3 checkpoints weights-only): plain data whose unpickling sets attributes
    or picks an enum member, and calls nothing else."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def load_weights_only(path: str | Path, map_location: Any = "cpu",
                      allowed: list | None = None) -> Any:
    """torch.load(weights_only=True); a file holding anything else is one TrainError naming it."""
    try:
        with torch.serialization.safe_globals(allowed or []):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise TrainError(
            f"{path}: refused to load: {_reason(exc)}, not the tensors and plain data of levl's "
            "train state; resume only from run dirs you trust, or start a new run") from None


def _reason(exc: Exception) -> str:
    """The culprit torch names ("Unsupported global: GLOBAL posix.system"), else the first line."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return f"it would call {found.group(1)}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WeightsOnlyCheckpointEngine:
    """DeepSpeed's checkpoint engine with a weights-only load; saving is DeepSpeed's own."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def load(self, path: str, map_location: Any = None) -> Any:
        return load_weights_only(path, map_location, deepspeed_state_globals())
