"""Rooms named once (issue 22): no import circle inside the core, and the CLI modules import a shared
module rather than each other."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "triage"


def _imports(path: Path) -> set[str]:
    """The core modules a module imports at any depth of its body (``from .x import``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "__init__")
    return found


def test_the_core_has_no_import_circle():
    graph = {p.stem: _imports(p) & {q.stem for q in CORE.glob("*.py")} for p in CORE.glob("*.py")}

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        for other in sorted(graph.get(name, ())):
            visit(other, path + [name])

    for name in sorted(graph):
        visit(name, [])


def test_the_edge_uses_the_public_core_only():
    """api/ (installed as mscc_triage_api) reads the core through ``triage``'s public names, never a
    private ``triage._*`` module."""
    edge = Path(__file__).resolve().parents[1] / "api"
    found = []
    for path in sorted(edge.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(edge.parent)}:{node.lineno} {n}" for n in names if n.startswith("triage._")]
    assert not found, found
