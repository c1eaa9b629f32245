"""The CLI works in a base install: commands of missing extras explain what to install."""

from __future__ import annotations

import subprocess
import sys

BLOCK = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'starlette', 'uvicorn', 'uvloop', 'httptools', 'prometheus_client'}:\n"
    "            raise ModuleNotFoundError(name, name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from sealgate.client.cli import main\n"
    "main()\n"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_command_without_server_extras():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "verify",
        "chat",
        "enclave",
        "gateway",
        "demo",
        "verify-evidence",
        "verify-release",
        "measure",
    ):
        assert command in result.stdout
    assert "not installed: pip install 'sealgate[enclave]'" in result.stdout


def test_a_server_command_says_which_extra_to_install():
    result = _run("enclave", "--port", "1")
    assert result.returncode == 1
    assert "pip install 'sealgate[enclave]'" in result.stderr
