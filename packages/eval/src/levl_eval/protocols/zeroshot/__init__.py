"""The zeroshot protocol: `protocol.py` runs it (prompt ensembles, readouts), `plots.py` draws
its confusion matrices, `entry.py` registers it (task data: the world itself or a
`data.splits.ClassificationData`)."""
