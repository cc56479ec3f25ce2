"""What an evaluation reads: its splits and task data (`splits.py`), the synthetic world
(`world.py`) and the batches of a split (`batches.py`). What is computed from them lives in
`levl_eval.features`."""
