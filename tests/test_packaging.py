"""Packaging: every package is listed in pyproject; the base install stays client-only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

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
    # Block the server packages and import what the base install provides.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        blocked = {'starlette', 'uvicorn', 'uvloop', 'httptools', 'prometheus_client'}\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sealgate.protocol, sealgate.client, sealgate.client.cli\n"
        "sealgate.protocol.RequestEncoder\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
