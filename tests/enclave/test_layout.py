"""The enclave's modules talk through public names only."""

from __future__ import annotations

import ast
from pathlib import Path

import sealgate.enclave

ENCLAVE = Path(sealgate.enclave.__file__).parent


def _modules() -> list[Path]:
    return sorted(ENCLAVE.rglob("*.py"))


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                found += [
                    f"{path.relative_to(ENCLAVE)}:{node.lineno} {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert found == []


def test_no_module_reads_private_attributes_of_objects_it_did_not_define():
    """``obj._name`` only on ``self``/``cls`` (or the class's own instances, ``other``),
    never on an object from another module."""
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue  # dunders (__aiter__, __name__) are public protocol
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls", "super"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            found.append(f"{path.relative_to(ENCLAVE)}:{node.lineno} {ast.unparse(node)}")
    assert found == []
