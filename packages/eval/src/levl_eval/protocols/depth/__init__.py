"""The depth protocol: `protocol.py` runs it, `data.py` is its task data, `synth.py` its
synthetic-world adapter, `maps.py` reads depth maps, `metrics.py` scores them, `entry.py`
registers it."""
