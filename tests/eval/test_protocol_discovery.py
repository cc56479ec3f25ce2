"""Adding a protocol is one folder: the registry finds every protocol package by name, and each
declares its own report columns and task sources; no central module names a protocol."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import levl_eval
from levl_eval import protocols
from levl_eval.protocols.registry import ENTRIES, PROTOCOLS, REAL_DATASETS, SYNTH_TASKS
from levl_eval.report import task_columns

PACKAGE = Path(levl_eval.__file__).parent
# Modules that once held a table keyed by protocol name; now they read the registry.
CENTRAL_MODULES = ("tasks.py", "report.py", "gains.py", "runner.py", "plots.py", "figure.py",
                   "columns.py", "datasets/__init__.py", "protocols/__init__.py",
                   "protocols/registry.py", "protocols/entry.py", "protocols/base.py")


def protocol_folders() -> set[str]:
    return {module.name for module in pkgutil.iter_modules(protocols.__path__) if module.ispkg}


def test_every_protocol_folder_is_registered_under_its_own_name() -> None:
    assert protocol_folders() == set(ENTRIES) == set(PROTOCOLS)
    for name, entry in ENTRIES.items():
        assert entry.protocol.name == name
        assert entry.protocol.__module__ == f"levl_eval.protocols.{name}.protocol"


def test_each_protocol_declares_its_columns_and_task_sources_in_its_folder() -> None:
    for name, entry in ENTRIES.items():
        assert entry.columns, name
        assert [column for _, _, column in task_columns(name)] == list(entry.columns)
        assert SYNTH_TASKS[name] is entry.synth_task
        assert REAL_DATASETS[name] is entry.real_datasets and entry.real_datasets, name
        for dataset, reader in entry.real_datasets.items():
            expected = entry.task_columns.get(dataset, entry.columns)
            assert [c for _, _, c in task_columns(f"{name}:{dataset}")] == list(expected)
            assert callable(reader)


def protocol_names_in(path: Path, names: set[str]) -> list[str]:
    """String constants of a module that are, or key a task of, a protocol's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and (node.value in names or node.value.partition(":")[0] in names and ":" in node.value)]


def test_no_central_module_names_a_protocol() -> None:
    names = protocol_folders()
    for module in CENTRAL_MODULES:
        assert protocol_names_in(PACKAGE / module, names) == [], module
