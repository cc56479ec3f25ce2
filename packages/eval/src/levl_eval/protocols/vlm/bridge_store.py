"""Saved `vlm` bridges: `--save-bridges DIR` keeps each trained bridge, `--bridges DIR` scores
with them instead of training again (a new test split, decoding settings, or another machine).

One safetensors file per (encoder, dataset): the bridge's weights, the patch-token
standardisation it was trained under, and in its metadata the LLM it maps into and both widths.
A bridge is only meaningful under the LLM it was trained with, so a bridge whose output width
differs from the `--llm` embedding width is refused up front, in one line, before any feature is
extracted; so is one trained on tokens of another width than the encoder's.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from levl_eval.errors import EvalError
from levl_eval.protocols.vlm.bridge import Bridge
from levl_eval.protocols.vlm.llm import FrozenLLM
from levl_eval.protocols.vlm.train import FittedBridge
from levl_eval.standardize import TokenStandardizer

BRIDGE_SCHEMA = "levl.vlm-bridge/v1"
SUFFIX = ".safetensors"


def bridge_path(directory: str | Path, encoder: str, dataset: str) -> Path:
    """`<encoder>--<dataset>.safetensors`, the encoder name made file-safe."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", encoder).strip("-") or "encoder"
    return Path(directory) / f"{safe}--{dataset}{SUFFIX}"


def save_bridge(path: Path, fitted: FittedBridge, llm: FrozenLLM) -> Path:
    """Write the bridge atomically (temp file + rename): a killed run leaves no half file."""
    layers = fitted.bridge.net
    tensors = {f"bridge.{name}": value.detach().cpu().contiguous()
               for name, value in fitted.bridge.state_dict().items()}
    tensors |= {"standardize.mean": fitted.standardize.mean_D.cpu().contiguous(),
                "standardize.std": fitted.standardize.std_D.cpu().contiguous()}
    metadata = {"schema": BRIDGE_SCHEMA, "llm": llm.name, "llm_width": str(llm.width),
                "in_dim": str(layers[0].in_features), "hidden": str(layers[0].out_features)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def bridge_metadata(path: Path) -> dict:
    """The file's metadata (schema checked), or one error naming the file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: not a saved bridge ({type(exc).__name__}); "
                        "drop --bridges to train new bridges") from None
    if metadata.get("schema") != BRIDGE_SCHEMA:
        raise EvalError(f"{path}: schema {metadata.get('schema')!r} is not {BRIDGE_SCHEMA!r}; "
                        "save it again with --save-bridges")
    return metadata


def check_bridge_width(path: Path, metadata: dict, llm: FrozenLLM) -> None:
    """A bridge maps into the embedding width of the LLM it was trained under, and no other."""
    width = int(metadata["llm_width"])
    if width != llm.width:
        raise EvalError(
            f"{path}: bridge maps into width {width} (trained under --llm {metadata['llm']}) but "
            f"--llm {llm.name} embeds tokens at width {llm.width}; pass --llm {metadata['llm']} "
            "or drop --bridges to train new bridges")


def check_bridges_dir(directory: str | Path, llm: FrozenLLM) -> None:
    """Refuse, before any extraction, a --bridges DIR that is missing or holds a bridge made
    for another LLM width."""
    root = Path(directory)
    if not root.is_dir():
        raise EvalError(f"--bridges {root}: no such directory (pass a --save-bridges directory)")
    for path in sorted(root.glob(f"*{SUFFIX}")):
        check_bridge_width(path, bridge_metadata(path), llm)


def load_bridge(path: Path, llm: FrozenLLM, in_dim: int) -> FittedBridge:
    """The saved bridge for this encoder and dataset, checked against the LLM and the tokens."""
    if not path.is_file():
        raise EvalError(f"{path}: no saved bridge for this encoder and dataset; run once with "
                        "--save-bridges DIR, or drop --bridges to train one")
    metadata = bridge_metadata(path)
    check_bridge_width(path, metadata, llm)
    if int(metadata["in_dim"]) != in_dim:
        raise EvalError(f"{path}: bridge reads patch tokens of width {metadata['in_dim']} but this "
                        f"encoder's are {in_dim} wide; it was saved for another encoder")
    tensors = load_file(str(path))
    bridge = Bridge(in_dim, int(metadata["hidden"]), llm.width)
    bridge.load_state_dict({name.removeprefix("bridge."): value for name, value in tensors.items()
                            if name.startswith("bridge.")})
    standardize = TokenStandardizer(tensors["standardize.mean"].to(llm.device),
                                    tensors["standardize.std"].to(llm.device))
    return FittedBridge(standardize, bridge.to(llm.device).eval(), [])
