"""Answers of the bridged frozen LLM: greedy short answers, and POPE-style yes/no.

Greedy decoding re-runs the whole right-padded batch for each new token (no KV cache): answers
are a few tokens long, and it keeps one code path for every Hugging Face causal LM.
Yes/no questions are decided at the first answer token: P("yes") vs P("no"), each the
probability mass of the first token of " yes"/" Yes" (resp. " no"/" No"), because the bridge
is trained on the datasets' lower-case answers while METHOD.md names "Yes"/"No".
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from levl_eval.protocols.vlm.bridge import assemble, llm_logits
from levl_eval.protocols.vlm.items import ItemTokens, QAItem
from levl_eval.protocols.vlm.llm import FrozenLLM
from levl_eval.protocols.vlm.train import FittedBridge, VLMSettings

YES_FORMS, NO_FORMS = (" yes", " Yes"), (" no", " No")


def item_batches(items: list[QAItem], batch_size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), batch_size):
        yield list(range(start, min(start + batch_size, len(items))))


def next_token_logits(llm: FrozenLLM, prefix_BPE: torch.Tensor, rows: list[list[int]]) -> torch.Tensor:
    """Logits [B, V] of the token after each row's last real token."""
    sequences = assemble(llm, prefix_BPE, rows)
    logits_BTV = llm_logits(llm, sequences)
    last_B = sequences.last_index_B().to(logits_BTV.device)
    return logits_BTV[torch.arange(len(rows), device=logits_BTV.device), last_B].float()


def greedy_rows(llm: FrozenLLM, prefix_BPE: torch.Tensor, prompts: list[list[int]],
                max_tokens: int) -> list[list[int]]:
    """Generated token ids per row, up to EOS (excluded) or `max_tokens`."""
    eos_id = llm.tokenizer.eos_token_id
    generated: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_tokens):
        next_B = next_token_logits(llm, prefix_BPE, [p + g for p, g in zip(prompts, generated, strict=True)]).argmax(-1)
        for index, token in enumerate(next_B.tolist()):
            done[index] = done[index] or token == eos_id
            if not done[index]:
                generated[index].append(token)
        if all(done):
            break
    return generated


def first_line(text: str) -> str:
    """The answer proper: generation may run on into a new line ("red\\nQuestion: ...")."""
    return text.strip().split("\n")[0].strip()


@torch.no_grad()
def greedy_answers(llm: FrozenLLM, fitted: FittedBridge, tokens_NLD: torch.Tensor,
                   items: list[QAItem], encoded: list[ItemTokens], settings: VLMSettings) -> list[str]:
    """The decoded short answer of every item, in order."""
    answers = []
    for batch in item_batches(items, settings.eval_batch_size):
        prefix_BPE = fitted.prefix(tokens_NLD[[items[i].image for i in batch]], llm.device)
        rows = greedy_rows(llm, prefix_BPE, [encoded[i].prompt for i in batch], settings.max_answer_tokens)
        answers += [first_line(llm.tokenizer.decode(row, skip_special_tokens=True)) for row in rows]
    return answers


def first_token_ids(llm: FrozenLLM, forms: tuple[str, ...]) -> list[int]:
    return sorted({llm.encode(form)[0] for form in forms})


@torch.no_grad()
def yes_no_answers(llm: FrozenLLM, fitted: FittedBridge, tokens_NLD: torch.Tensor,
                   items: list[QAItem], encoded: list[ItemTokens], settings: VLMSettings) -> list[bool]:
    """True where P(yes) > P(no) at the first answer token."""
    yes_ids, no_ids = first_token_ids(llm, YES_FORMS), first_token_ids(llm, NO_FORMS)
    said_yes = []
    for batch in item_batches(items, settings.eval_batch_size):
        prefix_BPE = fitted.prefix(tokens_NLD[[items[i].image for i in batch]], llm.device)
        logp_BV = next_token_logits(llm, prefix_BPE, [encoded[i].prompt for i in batch]).log_softmax(-1)
        yes_B = logp_BV[:, yes_ids].logsumexp(-1)
        no_B = logp_BV[:, no_ids].logsumexp(-1)
        said_yes += (yes_B > no_B).tolist()
    return said_yes
