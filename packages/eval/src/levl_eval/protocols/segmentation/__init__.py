"""The segmentation protocol: `protocol.py` runs it, `data.py` is its task data, `synth.py` its
synthetic-world adapter, `metrics.py` mIoU, `examples.py` the examples kept in report.json,
`plots.py` their figure, `entry.py` registers it."""
