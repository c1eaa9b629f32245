"""No client module reaches into another module's private (underscore) names.

Read from the source with :mod:`ast`: a name imported with ``from x import _name``, a class
deriving from an imported underscore class (``class A(_Base)``, ``class A(mod._Base)``), or
``mod._name`` on an imported module. What two modules share is public by design
(:mod:`sealgate.client.exchange`, :mod:`sealgate.client.drivers`).
"""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str, filename: str = "<source>") -> list[str]:
    """Each place in ``source`` that uses another module's private name."""
    tree = ast.parse(source, filename)
    imported: dict[str, str] = {}  # local name -> the imported name it stands for
    modules: set[str] = set()  # local names bound to modules by ``import x``
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = "." * node.level + (node.module or "")
            for alias in node.names:
                imported[alias.asname or alias.name] = alias.name
                if _private(alias.name):
                    found.append(f"{filename}:{node.lineno}: imports {alias.name} from {origin}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Name) and _private(imported.get(base.id, "")):
                    found.append(
                        f"{filename}:{node.lineno}: {node.name} subclasses the imported "
                        f"private {imported[base.id]}"
                    )
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id in imported or node.value.id in modules)
            and _private(node.attr)
        ):
            found.append(f"{filename}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return sorted(found)


def test_no_client_module_uses_another_modules_private_names():
    found: list[str] = []
    for path in sorted(CLIENT.rglob("*.py")):
        found += private_reaches(path.read_text(), str(path.relative_to(CLIENT.parent)))
    assert found == []


def test_the_rule_sees_private_imports_subclassing_and_attributes():
    source = (
        "from . import native\n"
        "from .transport import _Core as Core, ENCLAVE_HEADER, __all__\n"
        "class NativeCore(Core):\n"
        "    pass\n"
        "class Weak(native._Opening):\n"
        "    pass\n"
        "class Fine(ENCLAVE_HEADER.__class__):\n"
        "    def f(self):\n"
        "        return self._private, native.OHTTP\n"
    )
    assert private_reaches(source, "m.py") == [
        "m.py:2: imports _Core from .transport",
        "m.py:3: NativeCore subclasses the imported private _Core",
        "m.py:5: uses native._Opening",
    ]
