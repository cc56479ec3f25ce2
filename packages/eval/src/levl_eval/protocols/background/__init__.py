"""The background protocol: `protocol.py` runs it, `data.py` is its task data, `synth.py` its
synthetic-world adapter, `entry.py` registers it."""
