"""No import cycle among etl's modules, and no import inside a function without a reason.

import-linter's layers contracts (pyproject.toml) hold inside the stage packages; this test
holds the whole of etl, read with `ast`: imports inside functions and under
`if TYPE_CHECKING:` count too, since moving an import there hides a cycle without
removing it. An import inside a function must say why on its line or the line above
(a heavy library loaded only when needed, say).
"""

from __future__ import annotations

import ast
import io
import itertools
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

import etl

PACKAGE = Path(etl.__file__).parent
ROOT = PACKAGE.parent
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def etl_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(
    tree: ast.AST, name: str, is_package: bool, known: set[str]
) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of one of the `known` modules, wherever it stands."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:  # from etl.report import charts
                    yield node.lineno, submodule
                elif base in known:
                    yield node.lineno, base


def import_graph(sources: dict[str, str], packages: set[str]) -> dict[str, dict[str, int]]:
    """module -> {module it imports: the line of the first such import}."""
    known = set(sources)
    graph: dict[str, dict[str, int]] = {}
    for name, source in sources.items():
        edges = graph.setdefault(name, {})
        for line, target in imported_modules(ast.parse(source), name, name in packages, known):
            if target != name:
                edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (its modules in import order, the first repeated last) per strongly
    connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_in(graph, group) for group in groups]


def cycle_in(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """A shortest way round the group from its first module back to itself."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return [*paths[node], start]
                if target in group and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def described(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0] for token in tokens if token.type == tokenize.COMMENT}


def unexplained_imports(source: str) -> list[int]:
    """Lines of imports inside a function with no comment on their lines or the line above
    (above the first of a run of imports on consecutive lines: one comment serves them)."""
    tree = ast.parse(source)
    commented = comment_lines(source)
    found = set()
    for function in ast.walk(tree):
        if not isinstance(function, FUNCTIONS):
            continue
        imports = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
        ending_on = {node.end_lineno: node for node in imports}
        for node in imports:
            first = node
            while first.lineno - 1 in ending_on:
                first = ending_on[first.lineno - 1]
            lines = {first.lineno - 1, *range(node.lineno, (node.end_lineno or node.lineno) + 1)}
            if not commented & lines:
                found.add(node.lineno)  # a nested function's imports are walked twice
    return sorted(found)


MODULES = etl_modules()


def test_no_import_cycle_in_etl() -> None:
    sources = {name: path.read_text(encoding="utf-8") for name, path in MODULES.items()}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    graph = import_graph(sources, packages)
    found = [described(graph, cycle) for cycle in cycles(graph)]
    assert not found, "import cycles in etl (one way round each):\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_inside_functions_say_why(name: str) -> None:
    path = MODULES[name]
    lines = unexplained_imports(path.read_text(encoding="utf-8"))
    where = ", ".join(f"{path.relative_to(ROOT)}:{line}" for line in lines)
    assert not lines, f"imports inside a function without a comment saying why: {where}"


def test_the_check_finds_a_cycle_hidden_in_a_function_and_type_checking() -> None:
    sources = {
        "etl.a": "from etl.b import x\n",
        "etl.b": "def f():\n    from etl.c import y  # why\n",
        "etl.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from etl import a\n",
        "etl": "",
        "etl.d": "from . import a\nfrom .a import z\n",
    }
    graph = import_graph(sources, {"etl"})
    assert graph["etl.d"] == {"etl.a": 1}
    assert cycles(graph) == [["etl.a", "etl.b", "etl.c", "etl.a"]]
    assert described(graph, cycles(graph)[0]) == (
        "etl.a (line 1) -> etl.b (line 2) -> etl.c (line 3) -> etl.a"
    )
    assert cycles({"etl.a": {"etl.b": 1}, "etl.b": {}}) == []


def test_the_check_finds_an_import_inside_a_function_without_a_reason() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    # pandas is heavy: loaded only when a frame is asked for\n"
        "    import pandas\n"
        "    import numpy\n"
        "    from etl import (  # the cli loads on demand\n"
        "        api,\n"
        "    )\n"
        "    def g():\n"
        "        import csv\n"
        "    return lambda: __import__('x')\n"
    )
    assert unexplained_imports(source) == [3, 11]
