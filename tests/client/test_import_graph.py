"""The client's modules import each other without a cycle, lazy imports included.

The graph is read from the source with :mod:`ast`: every ``import`` statement anywhere in a
module (top level, inside a function, under ``TYPE_CHECKING``) is an edge, so a cycle
cannot hide behind an import moved into a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
PACKAGE = "sealgate.client"


def _module_name(path: Path) -> str:
    parts = path.relative_to(CLIENT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Absolute names an import statement may load (a ``from`` import may name submodules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    return [origin] + [f"{origin}.{alias.name}" for alias in node.names]


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module -> the client modules it imports.

    Importing ``a.b.c`` runs ``a.b``'s ``__init__`` too, so a subpackage counts as an edge
    unless the importer lives inside it (then it is already initialising). The root package
    is the public facade no client module imports.
    """
    files = {_module_name(path): path for path in CLIENT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, module, is_package):
                if target not in files or target == module:
                    continue
                edges.add(target)
                own = set(_ancestors(module)) | ({module} if is_package else set())
                edges.update(
                    parent
                    for parent in _ancestors(target)
                    if parent in files and parent != PACKAGE and parent not in own
                )
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_client_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph[f"{PACKAGE}.verification"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_graph_sees_lazy_and_type_checking_imports():
    # The two kinds of import a cycle used to hide behind are both edges.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .a import A\n"
        "def f():\n    from .b.c import C\n"
    )
    tree = ast.parse(source)
    found = [
        target
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level
        for target in _targets(node, f"{PACKAGE}.x", False)
    ]
    assert f"{PACKAGE}.a" in found and f"{PACKAGE}.b.c" in found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_client_module_imports_the_servers():
    # The import test in tests/test_packaging.py sees module-level imports only; a lazy
    # import inside a function (how the demo once measured the enclave) shows up here.
    found = []
    for path in CLIENT.rglob("*.py"):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, path.name == "__init__.py"):
                    if target.startswith(("sealgate.enclave", "sealgate.gateway")):
                        found.append(f"{path.relative_to(CLIENT)}:{node.lineno} {target}")
    assert not found
