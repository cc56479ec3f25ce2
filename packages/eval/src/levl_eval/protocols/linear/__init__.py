"""The linear protocol: `protocol.py` runs the probes on frozen features, `entry.py` registers it
(task data: the world itself or a `data.splits.ClassificationData`; probe heads in levl_eval.probes)."""
