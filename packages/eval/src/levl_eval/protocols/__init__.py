"""Evaluation protocols, one folder each (`protocols/<name>/`): the protocol class, its task
data, its registration (`entry.py`) and the modules only it uses. `levl_eval.protocols.registry`
finds them by name; packages/eval/README.md says how to add one."""
