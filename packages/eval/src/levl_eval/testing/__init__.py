"""Helpers for tests and benchmarks (not used by levl-eval itself): `worlds` writes synthetic
worlds, dataset layouts and micro checkpoints, `dense` the NYUv2 / COCO-Stuff layouts, `llm` a
tiny offline causal LM (imports transformers, so it stays apart)."""
