"""DESIGN.md's package boundaries: packages talk only through the manifest and the checkpoint."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[1] / "packages"
ALLOWED = {
    "levl_data": set(),
    "levl_model": set(),
    "levl_train": {"levl_data", "levl_model"},
    "levl_eval": {"levl_data", "levl_model"},
}


def levl_imports(source_file: Path) -> set[str]:
    """Top-level levl packages a file imports, at module level or inside functions."""
    tree = ast.parse(source_file.read_text(), filename=str(source_file))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.startswith("levl_"))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package):
    src = PACKAGES / package.removeprefix("levl_") / "src" / package
    files = sorted(src.rglob("*.py"))
    assert files, f"no sources found for {package} at {src}"
    violations = {
        f"{path.relative_to(PACKAGES)} imports {other}"
        for path in files
        for other in levl_imports(path) - ALLOWED[package] - {package}
    }
    assert not violations, sorted(violations)


def test_checker_sees_a_hidden_function_level_import(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from levl_train.loop import train\n    return train\n")
    assert levl_imports(sneaky) == {"levl_train"}
