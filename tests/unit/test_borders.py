"""Borders import-linter cannot state: the command line uses only public names."""

from __future__ import annotations

import ast
from pathlib import Path

import etl

PACKAGE = Path(etl.__file__).parent


def private_names_used(source: str) -> list[str]:
    """`from etl... import _x` and `etl_module._x` in this source."""
    tree = ast.parse(source)
    etl_aliases = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("etl"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.module}.{alias.name}")
                etl_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            etl_aliases.update(a.asname or a.name for a in node.names if a.name.startswith("etl"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in etl_aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_cli_imports_no_private_names() -> None:
    assert private_names_used((PACKAGE / "cli.py").read_text()) == []


def test_the_check_finds_a_private_import() -> None:
    assert private_names_used("from etl.warehouse.build import _fsync_dir\n") == [
        "etl.warehouse.build._fsync_dir"
    ]
    assert private_names_used("from etl.report import render\nrender._swap()\n") == ["render._swap"]
