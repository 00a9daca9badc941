"""The library's layers, read from its import statements (and checked by importing).

Bottom: ``settings``, ``storage`` and the shared contract modules (``records``, ``pii``,
``workers``). Stages above them: curation, validation, evaluation, registry, serving. On top:
``modelyard.tasks`` (DAG-facing adapters) and the CLI. A module-level import cycle breaks
whichever module happens to be imported first, so the module-level import graph must be
acyclic, and each module must import on its own in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "modelyard"
STAGES = ("curation", "validation", "evaluation", "registry", "serving")
TOP = ("tasks", "cli", "demo", "backfill")
BOTTOM = ("settings", "storage", "records", "pii", "workers")
#: Stages that import no other stage at all (their shared pieces live in BOTTOM).
SELF_CONTAINED = ("curation", "validation")
#: Cross-stage imports that exist outside this branch's files (registry <-> serving pyfunc,
#: evaluation -> registry artifacts, serving -> evaluation formats/suite): listed so the test
#: fails on any NEW one; shrink it, never grow it.
KNOWN_CROSS_STAGE = {
    ("evaluation", "modelyard.registry"),
    ("evaluation", "modelyard.registry.artifacts"),
    ("evaluation", "modelyard.registry.tags"),
    ("registry", "modelyard.serving.pyfunc"),
    ("serving", "modelyard.evaluation.formats"),
    ("serving", "modelyard.evaluation.suite"),
    ("serving", "modelyard.registry.artifacts"),
}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """``modelyard.*`` modules imported by ``path`` (``from a import b`` counts ``a.b`` when
    ``a.b`` is a module). Module level: outside functions (imports there run on import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # also module-level ``if``/``try`` blocks, not TYPE_CHECKING ones
        nodes = [n for top in tree.body for n in _module_level(top)]
    found = set()
    package = _module(path)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("modelyard")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                base = ".".join(package.split(".")[: -node.level] + [node.module])
            if not base.startswith("modelyard"):
                continue
            found.add(base)
            for alias in node.names:
                if _exists(f"{base}.{alias.name}"):
                    found.add(f"{base}.{alias.name}")
    return found


def _module_level(node: ast.stmt) -> list[ast.stmt]:
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        return []
    if isinstance(node, (ast.If, ast.Try)):
        inner = node.body + node.orelse + getattr(node, "finalbody", [])
        for handler in getattr(node, "handlers", []):
            inner += handler.body
        return [n for child in inner for n in _module_level(child)]
    return [node]


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (
        PACKAGE.parent / rel / "__init__.py"
    ).is_file()


def _sources() -> dict[str, Path]:
    return {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_stages_import_only_lower_layers_and_not_each_others_internals():
    bad = []
    for module, path in _sources().items():
        group = _group(module)
        for imported in _imports(path, module_level_only=False):
            target = _group(imported)
            if target in TOP and group not in TOP:
                bad.append(f"{module} imports the upper layer {imported}")
            elif group in STAGES and target in STAGES and target != group:
                if group in SELF_CONTAINED or (group, imported) not in KNOWN_CROSS_STAGE:
                    bad.append(f"{module} imports another stage's {imported}")
            elif group in BOTTOM and target not in BOTTOM and target != "":
                bad.append(f"{module} (bottom layer) imports {imported}")
    assert not bad, "\n".join(bad)


def test_module_level_import_graph_has_no_cycle():
    # A submodule naming its own package is no edge: Python imports the package first.
    graph = {
        m: {i for i in _imports(p, module_level_only=True) if not (m + ".").startswith(i + ".")}
        for m, p in _sources().items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt in graph and not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module)


# The modules of the former cycle (curation.tasks -> validation -> curation) and the layers'
# entry points, each imported first thing in a fresh interpreter.
FRESH = (
    "modelyard.storage",
    "modelyard.curation.pipeline",
    "modelyard.curation.publish",
    "modelyard.validation.gate",
    "modelyard.tasks.curation",
    "modelyard.evaluation.suite",
    "modelyard.training",
)


def test_each_module_imports_first_in_a_fresh_interpreter():
    code = "import importlib, sys; importlib.import_module(sys.argv[1])"
    for module in FRESH:
        done = subprocess.run(
            [sys.executable, "-c", code, module], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{module}: {done.stderr.strip().splitlines()[-1:]}"
