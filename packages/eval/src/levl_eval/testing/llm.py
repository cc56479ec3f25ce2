"""A tiny randomly initialised Llama with a word-level tokenizer, for fast `vlm` tests.

Kept apart from `levl_eval.testing.worlds` because it imports transformers (~10 s on a small CPU),
which tests of the other protocols should not pay.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from levl_eval.protocols.vlm.items import PROMPT
from levl_eval.protocols.vlm.llm import FrozenLLM

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word and punctuation mark of `texts` (+ the prompt)."""
    splitter = pre_tokenizers.Whitespace()
    words = sorted({piece for text in [*texts, PROMPT, "Yes No yes no"]
                    for piece, _ in splitter.pre_tokenize_str(text)})
    vocab = {token: index for index, token in enumerate([*SPECIALS, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def tiny_llm(texts: Iterable[str], *, width: int = 48, layers: int = 2, seed: int = 0,
             init_std: float = 0.3) -> FrozenLLM:
    """A frozen random LlamaForCausalLM whose vocabulary covers `texts`.

    `init_std` is far above Llama's 0.02: at 0.02 a tiny model's logits are nearly flat whatever
    its input, so no bridge could steer it (a pretrained LLM has peaked logits)."""
    tokenizer = word_tokenizer(texts)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, initializer_range=init_std,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return FrozenLLM.wrap("tiny-llama", LlamaForCausalLM(config), tokenizer, "random LlamaConfig")
