"""What is computed from the data: the frozen-feature types protocols consume (`types.py`),
their extraction (`extract.py`), the on-disk cache (`cache.py`) and the memory-mapped arrays
large features spill to (`spill.py`). What they are computed from lives in `levl_eval.data`."""
