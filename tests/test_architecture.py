"""Structure as a contract: the import graph of ``repeval/`` and ``encoders/`` has no cycle.

The graph is read from the source (``ast``), not from ``sys.modules``: every ``import`` and
``from ... import`` counts, at module level and inside functions alike, since a
function-level import that closes a cycle still couples the two modules both ways. Imports
under ``if TYPE_CHECKING:`` are left out (they never run). ``from pkg import name`` is an
edge to the submodule ``pkg.name`` when there is one, else to ``pkg``; importing a
submodule is not counted as importing its parent package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("repeval", "encoders")


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _statements(body: list[ast.stmt]):
    """Every statement, nested ones included, except the bodies of ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from _statements(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            nested = getattr(node, field, [])
            yield from _statements([n for n in nested if isinstance(n, (ast.stmt, ast.excepthandler))])


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.excepthandler):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                deepest = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known),
                               None)
                if deepest:
                    targets.add(deepest)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    modules = module_names(root, packages)
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path of module names) per strongly connected component of
    more than one module (Tarjan's algorithm), sorted for stable messages."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, set(c)) for c in sorted(components)]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, e.g. ``[a, b, a]``."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a cycle")  # pragma: no cover - Tarjan's components always close


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "repeval.checkpoint" in graph["repeval.extract"]  # module level
    assert "encoders.factory" in graph["encoders"]  # from a package's __init__
    assert "encoders" in graph["repeval.checkpoint"]  # inside load_model
    assert not any("repeval.train" in targets for name, targets in graph.items()
                   if name in ("repeval.checkpoint", "repeval.extract")), "loading must not need the trainer"


@pytest.fixture
def tree(tmp_path):
    def write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return tmp_path

    return write


def test_a_cycle_closed_inside_a_function_is_found(tree):
    root = tree({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
                 "pkg/b.py": "def f():\n    from pkg.a import thing\n", "pkg/c.py": "import pkg.a\n"})
    assert cycles(import_graph(root, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_relative_imports_and_type_checking_blocks(tree):
    root = tree({"pkg/__init__.py": "from . import a\n", "pkg/a.py": "from .sub import b\n",
                 "pkg/sub/__init__.py": "", "pkg/sub/b.py": "from typing import TYPE_CHECKING\n"
                 "if TYPE_CHECKING:\n    from pkg import a\nfrom .. import c\n", "pkg/c.py": ""})
    graph = import_graph(root, ("pkg",))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.c"},
                     "pkg.c": set()}
    assert cycles(graph) == []


NUMERIC = ("numpy", "torch", "scipy", "sklearn", "faiss")
API_MODULES = ("repeval/api.py", "repeval/frame.py", "repeval/lightning.py")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", API_MODULES)
def test_the_python_api_does_no_numerics_of_its_own(module):
    """The API converts arguments and wraps rows; every number comes from the layers below
    (evaluation, pipeline, probes, summary, compare), the ones the command line uses."""
    numeric = sorted(_imported_roots(ROOT / module) & set(NUMERIC))
    assert not numeric, f"{module} imports {numeric}: move that work below the API"


def _calls(path: Path, function: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (fn,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    return {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)}


def test_the_shell_and_python_share_one_evaluation_path():
    """`repeval run` and repeval.evaluate/probe plan and execute through repeval.evaluation."""
    assert {"evaluation.plan", "evaluation.execute"} <= _calls(ROOT / "repeval/cli.py", "run")
    assert {"evaluation.plan", "evaluation.execute"} <= _calls(ROOT / "repeval/api.py", "_run")
