"""The package's import graph (every ``import``, lazy ones included, read with ``ast``): no circle, and
the orchestration layers point one way: pipeline.cli -> pipeline.chain -> pipeline.runner -> pipeline.stage_table
-> stage code
-> shared helpers (layout, io, seeding, errors)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from tests.conftest import REPO

PACKAGE = "pate_lightning"
# top to bottom: a module may import only modules of its own layer or below
LAYERS = [
    {"pipeline.cli", "__main__"},
    {"compare.command", "compare.run"},  # compare runs routes through the pipeline
    {"pipeline.chain", "pipeline.run_report"},
    {"pipeline.runner", "pipeline.summary", "pipeline.teacher_groups"},
    {"pipeline.stage_table"},
    None,  # stage code: every module not named in another layer
    {"layout", "io", "seeding", "errors"},
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pkg import name`` counts as ``pkg.name`` when that is a module)."""
    files = {module_name(p, root): p for p in (root / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a list of modules (first repeated at the end), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def layer(module: str) -> int:
    short = module.removeprefix(PACKAGE + ".")
    for index, members in enumerate(LAYERS):
        if members is not None and short in members:
            return index
    return LAYERS.index(None)


def test_find_cycle_sees_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 40  # the walk really read the package
    assert find_cycle(graph) == []


def test_imports_point_down_the_layers():
    """pipeline -> stages -> shared helpers: nothing imports a layer above its own."""
    graph = import_graph()
    upward = {m: sorted(t for t in targets if layer(t) < layer(m)) for m, targets in graph.items()}
    assert {m: t for m, t in upward.items() if t} == {}
    # the orchestration chain really is wired as documented
    assert {"pate_lightning.pipeline.chain"} <= graph["pate_lightning.pipeline.cli"]
    assert {"pate_lightning.pipeline.runner", "pate_lightning.pipeline.stage_table"} <= graph["pate_lightning.pipeline.chain"]
    assert "pate_lightning.pipeline.stage_table" in graph["pate_lightning.pipeline.runner"]


STRATEGY_INTERNALS = {"launcher", "set_world_ranks", "cluster_environment", "_setup_model", "_get", "_parser"}


def test_lightning_is_used_through_its_public_api():
    """No import of a private Lightning module or name, and none of the Strategy/CLI internals the package once used."""
    found = []
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lightning":
                names = node.module.split(".") + [alias.name for alias in node.names]
                found += [f"{path.name}: from {node.module} import {n}" for n in names if n.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr in STRATEGY_INTERNALS:
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []
