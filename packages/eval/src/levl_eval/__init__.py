"""levl eval package: frozen-encoder protocols (zero-shot, linear probe, ...) and reports.

Entry points: `levl-eval` (levl_eval.cli), `levl_eval.runner.run_evaluation`, the protocol
registry `levl_eval.protocols.registry` (one folder per protocol under levl_eval/protocols/, found
by name), and `levl_eval.report` for report.json / report.md.
"""

__version__ = "0.1.0"
