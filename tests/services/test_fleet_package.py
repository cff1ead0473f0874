"""The fleet is one package with no circle: its modules import one another one way only, and
none imports inside a function to dodge a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = "app.services.fleet"
ROOT = Path(__file__).resolve().parents[2] / "app" / "services" / "fleet"


def test_the_fleet_packages_modules_import_each_other_without_a_cycle() -> None:
    graph = grimp.build_graph("app")
    modules = {m for m in graph.find_children(PACKAGE)}
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d in modules}
             for m in modules}
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for d in edges[m]:
            assert seen.get(d) != 1, " -> ".join([*path, m, d])
            if d not in seen:
                visit(d, [*path, m])
        seen[m] = 2

    for m in sorted(modules):
        if m not in seen:
            visit(m, [])
    assert len(modules) >= 10


def test_no_fleet_module_imports_inside_a_function() -> None:
    for path in ROOT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, (path.name, node.name)
