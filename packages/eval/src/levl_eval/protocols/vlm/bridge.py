"""The bridge of the `vlm` protocol: patch tokens → a prefix of LLM input embeddings.

Bridge = Linear → GELU → Linear into the LLM's embedding width (METHOD.md, "Frozen VLM
backbone"). A sequence is [BOS] + bridge(patch tokens) + prompt tokens (+ answer tokens when
training), right-padded: with right padding the default position ids are right for every real
token, so the same assembly serves training, greedy decoding and yes/no scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.heads import seeded_linear
from levl_eval.protocols.vlm.llm import FrozenLLM

IGNORE = -100


class Bridge(nn.Module):
    """Linear → GELU → Linear; the only weights the `vlm` protocol trains."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(seeded_linear(in_dim, hidden, generator), nn.GELU(),
                                 seeded_linear(hidden, out_dim, generator))

    def forward(self, tokens_BLD: torch.Tensor) -> torch.Tensor:
        return self.net(tokens_BLD)


@dataclass(frozen=True)
class Sequences:
    """A right-padded batch: input embeddings, attention mask and where each row's text starts."""

    embeds_BTE: torch.Tensor
    mask_BT: torch.Tensor
    text_start: int
    lengths_B: torch.Tensor  # real length of each row, prefix included

    def last_index_B(self) -> torch.Tensor:
        """Position of each row's last real token (whose logits predict the next one)."""
        return self.lengths_B - 1


def head_embeds(llm: FrozenLLM, prefix_BPE: torch.Tensor) -> torch.Tensor:
    """[BOS] + prefix, when the tokenizer has a BOS token (Llama-style models expect one)."""
    bos_id = llm.tokenizer.bos_token_id
    if bos_id is None:
        return prefix_BPE
    bos_BE = llm.embed(torch.tensor([bos_id]))[None].expand(prefix_BPE.shape[0], -1, -1)
    return torch.cat([bos_BE.to(prefix_BPE.dtype), prefix_BPE], dim=1)


def assemble(llm: FrozenLLM, prefix_BPE: torch.Tensor, rows: list[list[int]]) -> Sequences:
    """[BOS] + prefix + each row's tokens, right-padded with token 0 under a zero mask."""
    head_BHE = head_embeds(llm, prefix_BPE)
    width = max(len(row) for row in rows)
    ids_BT = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        ids_BT[index, :len(row)] = torch.tensor(row, dtype=torch.long)
    text_BTE = llm.embed(ids_BT).to(head_BHE.dtype)
    lengths_B = torch.tensor([len(row) for row in rows]) + head_BHE.shape[1]
    mask_BT = torch.arange(head_BHE.shape[1] + width)[None] < lengths_B[:, None]
    return Sequences(torch.cat([head_BHE, text_BTE], dim=1), mask_BT.long().to(llm.device),
                     head_BHE.shape[1], lengths_B)


def llm_logits(llm: FrozenLLM, sequences: Sequences) -> torch.Tensor:
    return llm.model(inputs_embeds=sequences.embeds_BTE, attention_mask=sequences.mask_BT).logits


def answer_labels(sequences: Sequences, prompts: list[list[int]], answers: list[list[int]]) -> torch.Tensor:
    """Targets aligned with the sequence: answer token ids at their positions, IGNORE elsewhere."""
    labels_BT = torch.full(sequences.mask_BT.shape, IGNORE, dtype=torch.long)
    for index, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        start = sequences.text_start + len(prompt)
        labels_BT[index, start:start + len(answer)] = torch.tensor(answer, dtype=torch.long)
    return labels_BT


def answer_loss(llm: FrozenLLM, prefix_BPE: torch.Tensor, prompts: list[list[int]],
                answers: list[list[int]]) -> torch.Tensor:
    """Next-token cross-entropy on the answer tokens only (prefix and question are context)."""
    sequences = assemble(llm, prefix_BPE, [p + a for p, a in zip(prompts, answers, strict=True)])
    logits_BTV = llm_logits(llm, sequences)
    labels_BT = answer_labels(sequences, prompts, answers).to(logits_BTV.device)
    return F.cross_entropy(logits_BTV[:, :-1].flatten(0, 1).float(), labels_BT[:, 1:].flatten(),
                           ignore_index=IGNORE)
