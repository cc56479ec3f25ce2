"""The vlm protocol (a frozen LLM reading the encoder through a trained bridge): `protocol.py`
runs it, `data.py` is its task data, `synth.py` its synthetic-world adapter, `llm.py` loads the
LLM, `items.py` the questions, `bridge.py` / `train.py` / `bridge_store.py` the bridge,
`answer.py` decodes answers, `vqa_metrics.py` / `scores.py` score them, `entry.py` registers it."""
