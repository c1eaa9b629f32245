"""Packaging: every package is listed, every import declared, every floor testable; the base
install stays client-only."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "protocol": "sealgate.protocol",
    "client": "sealgate.client",
    "enclave": "sealgate.enclave",
    "gateway": "sealgate.gateway",
}


def test_every_subpackage_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        assert config["package-dir"][name] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_base_dependencies_have_no_server_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for server in ("starlette", "uvicorn", "uvloop", "httptools", "prometheus"):
        assert server not in base


def test_client_and_protocol_import_without_server_packages():
    # Block the server packages (third-party and sealgate's own) and import every module the
    # base install provides: the client does not know the servers exist.
    code = (
        "import importlib, pkgutil, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        blocked = {'starlette', 'uvicorn', 'uvloop', 'httptools', 'prometheus_client'}\n"
        "        if name.split('.')[0] in blocked or name.startswith(\n"
        "            ('sealgate.enclave', 'sealgate.gateway')\n"
        "        ):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sealgate.protocol, sealgate.client\n"
        "for package in (sealgate.protocol, sealgate.client):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "from sealgate.client.cli import main\n"
        "assert 'verify' in main.list_commands(None)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _requirements(extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    """The project's requirements (base plus ``extras``), by normalized distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _third_party_imports(folder: str) -> dict[str, str]:
    """Top-level modules a package folder imports that are neither stdlib nor sealgate's."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", "sealgate"):
                    found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize(
    ("folder", "extras"),
    [
        ("protocol", ()),
        # openai only inside SecureClient.openai() / async_openai(); signxml (gpu) only when
        # a GPU's RIMs are verified (client/verify/nvidia/rim.py).
        ("client", ("openai", "gpu")),
        ("enclave", ("enclave",)),
        ("gateway", ("gateway",)),
    ],
)
def test_every_third_party_import_is_a_declared_dependency(folder, extras):
    declared = set(_requirements(extras))
    distributions = packages_distributions()
    undeclared = []
    for module, where in _third_party_imports(folder).items():
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            undeclared.append(f"{module} ({where})")
    assert not undeclared, f"imported but not declared for {folder}/: {undeclared}"


def test_every_dependency_has_one_floor_for_the_minimum_versions_check():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = config["project"]
    lines = [*config["build-system"]["requires"], *project["dependencies"]]
    lines += [line for extra in project["optional-dependencies"].values() for line in extra]
    for requirement in map(Requirement, lines):
        if requirement.name != project["name"]:
            floors = [s for s in requirement.specifier if s.operator == ">="]
            assert len(floors) == 1, f"{requirement} needs exactly one '>=' floor"


def test_build_backend_floor_understands_the_spdx_license_string():
    # An SPDX expression in project.license (PEP 639) needs setuptools 77; older ones
    # reject the table-or-string ambiguity while validating pyproject.toml.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(config["project"]["license"], str)
    (setuptools,) = [
        r for r in map(Requirement, config["build-system"]["requires"]) if r.name == "setuptools"
    ]
    (floor,) = [Version(s.version) for s in setuptools.specifier if s.operator == ">="]
    assert floor >= Version("77.0.1")


def test_pyhpke_is_used_through_its_public_api_only():
    """No private pyhpke state is touched (the removed body-only mode once rewound ``_seq``),
    so pyhpke needs no upper bound."""
    pin = _requirements()["pyhpke"].specifier
    assert not any(s.operator in ("<", "<=", "==", "~=") for s in pin)
    assert version("pyhpke") in pin
    sources = [
        p
        for package in ("protocol", "client", "enclave", "gateway")
        for p in (ROOT / package).rglob("*.py")
    ]
    assert sources
    for path in sources:
        assert not re.search(r"\._seq\b", path.read_text()), path
