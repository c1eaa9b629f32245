"""``sealgate enclave`` as a real process."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

import httpx
import pytest


def test_port_zero_prints_the_bound_port(http):
    args = ["--port", "0", "--attester", "software", "--log-level", "warning"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealgate.enclave", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        line = ""
        while not line.startswith("listening: "):
            line = lines.get(timeout=30)
        url = line.removeprefix("listening: ").strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        # Printed once the socket listens: a connection made now waits until uvicorn accepts.
        health = httpx.get(url + "/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["platform"] == "software"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(10)


def test_max_concurrent_below_one_is_refused_up_front():
    """0 would divide by zero in /healthz's load; the CLI and the config both refuse it."""
    from click.testing import CliRunner
    from sealgate.enclave import EnclaveConfig
    from sealgate.enclave.cli import enclave

    with pytest.raises(ValueError, match="at least 1"):
        EnclaveConfig(max_concurrent_requests=0)
    result = CliRunner().invoke(enclave, ["--max-concurrent", "0", "--attester", "software"])
    assert result.exit_code == 2 and "--max-concurrent" in result.output
