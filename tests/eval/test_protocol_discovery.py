"""Adding a protocol is one folder: the registry finds every protocol package by name, and each
declares its own report columns, task sources, suite section and command-line options; no
central module names a protocol."""

from __future__ import annotations

import ast
import dataclasses
import pkgutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import levl_eval
from levl_eval import cli, protocols
from levl_eval.columns import Column
from levl_eval.protocols.entry import CliOption, ProtocolEntry
from levl_eval.protocols.registry import ENTRIES, PROTOCOLS, REAL_DATASETS, SYNTH_TASKS
from levl_eval.protocols.retrieval.protocol import Retrieval
from levl_eval.report import task_columns
from levl_eval.suites import EvalSuite, eval_options, resolve_suite

PACKAGE = Path(levl_eval.__file__).parent
# Modules that once held a table keyed by protocol name; now they read the registry.
CENTRAL_MODULES = ("tasks.py", "report.py", "gains.py", "runner.py", "plots.py", "figure.py",
                   "columns.py", "datasets/__init__.py", "protocols/__init__.py",
                   "protocols/registry.py", "protocols/entry.py", "protocols/base.py", "cli.py")


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


def test_each_protocols_section_is_a_suite_field_and_its_options_set_that_section() -> None:
    suite = resolve_suite()
    for name, entry in ENTRIES.items():
        if entry.section is None:
            assert not entry.cli_options, name  # an option must have a field to set
            continue
        assert isinstance(getattr(suite, name), entry.section)
        fields = {field.name for field in dataclasses.fields(entry.section)}
        assert {option.field for option in entry.cli_options} <= fields, name
        assert eval_options(suite).sections[name] == getattr(suite, name)
    assert "linear" in {field.name for field in dataclasses.fields(EvalSuite)}


@dataclasses.dataclass(frozen=True)
class KnobSection:
    knob: int = 1
    items: tuple[str, ...] = ()
    where: str | None = None


def test_a_new_protocols_options_reach_its_suite_fields_with_no_cli_code(monkeypatch, tmp_path: Path) -> None:
    """A protocol declared only by its entry gets a command whose options, bounds included,
    become `<name>.<field>` suite values."""
    entry = ProtocolEntry(
        protocol=type("KnobProtocol", (Retrieval,), {"name": "knob"}), order=99,
        synth_task=lambda data: data, real_datasets={}, columns=(Column("r", ("r",)),),
        section=KnobSection,
        cli_options=(CliOption("--knob", "knob", int, help="a number", min=1),
                     CliOption("--knob-item", "items", str, help="an item", repeatable=True),
                     CliOption("--knob-dir", "where", Path, help="a place")))
    monkeypatch.setitem(cli.ENTRIES, "knob", entry)
    seen = []
    monkeypatch.setattr(cli, "evaluate_and_publish", lambda *args, **kwargs: seen.append(args[4]))
    app = typer.Typer()
    app.command("knob")(cli.single_protocol_command("knob"))
    app.command("other")(lambda: None)  # two commands, so typer keeps the command's name
    base = ["knob", "--ckpt", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*base, "--knob", "3", "--knob-item", "a", "--knob-item", "b",
                                      "--knob-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen[-1]["protocols"] == ("knob",)
    assert (seen[-1]["knob.knob"], seen[-1]["knob.items"]) == (3, ("a", "b"))
    assert seen[-1]["knob.where"] == str(tmp_path)  # a path is recorded as text
    result = CliRunner().invoke(app, base)
    assert (seen[-1]["knob.knob"], seen[-1]["knob.items"], seen[-1]["knob.where"]) == (None, None, None)
    result = CliRunner().invoke(app, [*base, "--knob", "0"])
    assert result.exit_code == 2 and len(seen) == 2  # below the declared minimum: refused


@pytest.mark.parametrize("name", [name for name, entry in ENTRIES.items() if entry.cli_options])
def test_a_protocols_options_are_on_all_and_on_its_own_command(name: str) -> None:
    for command in ("all", name):
        result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        for option in ENTRIES[name].cli_options:
            assert option.flag in result.output, (command, option.flag)
