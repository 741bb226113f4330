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


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
    """Fail naming the first import circle of a module graph (module -> the modules it imports)."""
    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        for other in sorted(graph.get(name, ())):
            visit(other, path + [name])

    for name in sorted(graph):
        visit(name, [])


def test_the_core_has_no_import_circle():
    _assert_no_circle({p.stem: _imports(p) & {q.stem for q in CORE.glob("*.py")} for p in CORE.glob("*.py")})


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


EDGE_PACKAGES = ("mscc_triage_api", "api")   # the HTTP app, installed and in the repository


def test_the_core_never_imports_the_edge():
    """triage/ never imports the HTTP app (mscc_triage_api, the repository's api/), at any depth, nor by
    name through importlib: the edge depends on the core, never the other way round. (``triage serve``
    names ``mscc_triage_api.wsgi:app`` to a server it starts as another process; that is not an import.)"""
    found = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str) and (
                        getattr(node.func, "attr", None) == "import_module"
                        or getattr(node.func, "id", None) in ("import_module", "__import__")):
                names = [node.args[0].value]
            else:
                continue
            found += [f"{path.relative_to(CORE.parent)}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in EDGE_PACKAGES]
    assert not found, found


def test_the_form_words_are_checked_by_the_core():
    """The CLI and the app check the form's words with one loader, the core's (issue 22)."""
    import triage
    from triage import _cli_common

    assert _cli_common.load_form_texts is triage.load_form_texts
    assert not (CORE.parent / "api" / "form_texts.py").exists()


EDGE = CORE.parent / "api"


def _edge_module(path: Path) -> str:
    """``api/cds/service.py`` -> ``cds.service``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(EDGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _edge_imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The edge modules a module imports with relative imports, resolved (``from ..fhir import map``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = _edge_module(path).split(".") if path.name == "__init__.py" else _edge_module(path).split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:   # ``from . import cards``: a module; ``from .x import name``: module x
                sub = ".".join(target + [alias.name])
                found.add(sub if (EDGE / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (EDGE / sub.replace(".", "/")).is_dir() else ".".join(target))
    return found


def test_the_edge_has_no_import_circle_when_its_modules_load():
    """api/ with its rooms (fhir/, cds/): no circle among the imports its modules run when they load."""
    modules = {_edge_module(p): p for p in EDGE.rglob("*.py") if "__pycache__" not in p.parts}
    _assert_no_circle({name: _edge_imports(path, top_level_only=True) & set(modules)
                       for name, path in modules.items()})


def test_the_fhir_room_never_reaches_the_cds_room():
    """api/fhir/ reads and maps a FHIR record; the CDS Hooks service (api/cds/) uses it, never the other way
    round (at any depth: a lazy import too), and fhir/ needs nothing of the app but the outbound GET and
    the problem details."""
    found = []
    for path in sorted((EDGE / "fhir").rglob("*.py")):
        for target in _edge_imports(path, top_level_only=False):
            if not (target.startswith("fhir") or target in ("outbound", "problems")):
                found.append(f"{path.relative_to(EDGE.parent)} imports {target}")
    assert not found, found
