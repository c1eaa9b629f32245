"""The gateway's modules form no import cycle (an ``ast`` graph over gateway/*.py).

Every import counts, wherever it is written: at module level, inside a function, or under
``if TYPE_CHECKING:`` (a cycle broken only by a late import is still a cycle to read).
"""

from __future__ import annotations

from pathlib import Path

from .test_blindness import _imports

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
PACKAGE = "sealgate.gateway"


def _local_imports(source: Path, package: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``source`` (a module of ``package``) imports."""
    return _imports(source, package) & modules


def import_graph(directory: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the package's ``__init__`` excluded)."""
    modules = {f"{package}.{p.stem}" for p in directory.glob("*.py") if p.stem != "__init__"}
    return {
        f"{package}.{p.stem}": _local_imports(p, package, modules) - {package}
        for p in directory.glob("*.py")
        if p.stem != "__init__"
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_gateway_modules_have_no_import_cycle():
    graph = import_graph(GATEWAY, PACKAGE)
    assert f"{PACKAGE}.proxy" in graph and f"{PACKAGE}.server" in graph
    assert f"{PACKAGE}.proxy" in graph[f"{PACKAGE}.server"]  # the worker runs the data plane
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_graph_sees_late_and_type_checking_imports(tmp_path):
    (tmp_path / "a.py").write_text("from .b import thing\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
    )
    (tmp_path / "c.py").write_text("def f():\n    from . import a\n    return a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (tmp_path / "c.py").write_text("import json\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
