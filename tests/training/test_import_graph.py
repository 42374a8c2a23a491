"""training/ and benchmarks/ import without circles, and the package never imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_names() -> dict[str, Path]:
    """``{module name: file}``: ``training.x`` as the package, benchmarks by file stem."""
    names = {f"training.{p.stem}": p for p in (ROOT / "training").glob("*.py")}
    names["training"] = names.pop("training.__init__")
    names.update({p.stem: p for p in (ROOT / "benchmarks").glob("*.py")})
    return names


def _imported(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` of the file names, at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: the modules of training/ and benchmarks/ it imports}``."""
    names = _module_names()
    return {name: (_imported(path) & set(names)) - {name} for name, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` as ``[a, b, ..., a]``; ``[]`` when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for child in sorted(graph.get(node, ())):
            cycle = visit(child)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


def test_the_search_finds_a_circle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_training_and_benchmarks_import_without_circles():
    graph = import_graph()
    assert "training.checkpoints" in graph["training.export"]  # the graph sees the imports
    assert find_cycle(graph) == []


def test_the_package_never_imports_training_or_benchmarks():
    ours = {name.split(".")[0] for name in _module_names()}  # "training" and the scripts
    for path in (ROOT / "src" / "napari_astrodenoise").rglob("*.py"):
        assert not {name.split(".")[0] for name in _imported(path)} & ours, path
