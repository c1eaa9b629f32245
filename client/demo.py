"""The demo fleet: three enclaves and a gateway on loopback, as separate processes.

Used by ``sealgate demo`` and by the end-to-end acceptance test, so both take the
same path. The enclaves use the ``software`` attester (a development stand-in for
hardware) with one root key this process generates and trusts explicitly; their
expected measurement comes from the enclave's own command
(``python -m sealgate.enclave --print-measurement``), as a reproducible build would
publish it: the client never imports the servers.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.protocol.public.logs import GATEWAY_ACCESS_LOGGER, LogFields
from sealgate.protocol.public.paths import HEALTH

from .errors import SealgateError
from .measurement import ExpectedMeasurement
from .policy import Policy

__all__ = ["ACCESS_LOGGER", "DemoError", "DemoFleet", "access_record"]

#: The gateway's access log: one JSON line per request, event ``request`` (see
#: :mod:`sealgate.protocol.public.logs`); only routing metadata.
ACCESS_LOGGER = GATEWAY_ACCESS_LOGGER
_MEASUREMENT_SIZE = 48  # SHA-384


class DemoError(SealgateError, RuntimeError):
    """A demo process did not start, or its enclave command gave no measurement."""


def access_record(line: bytes | str) -> dict[str, object] | None:
    """The structured fields of one gateway access-log line (None for any other line)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("logger") != ACCESS_LOGGER:
        return None
    if record.get("event") != "request":
        return None
    return {k: v for k, v in record.items() if k in LogFields.__annotations__}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{url} exited with code {proc.returncode} during start-up")
        try:
            if httpx.get(url + HEALTH, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise DemoError(f"{url} did not become healthy within {timeout:.0f}s")


class DemoFleet:
    """Start with ``with DemoFleet() as fleet:``; everything stops when the block ends."""

    def __init__(
        self,
        enclaves: int = 3,
        *,
        upstream: str | None = None,
        token_delay: float = 0.0,
        gateway_port: int | None = None,
        models: list[tuple[str, ...]] | None = None,
        gateway_poll_interval: float = 0.5,
    ) -> None:
        #: Per enclave, the models its engine configuration names (None: the classic
        #: single-model demo, whose evidence names no models).
        self.models = models
        if models is not None:
            enclaves = len(models)
        self.count = enclaves
        self.upstream = upstream
        self.token_delay = token_delay
        #: Seconds between the gateway's health polls of the enclaves.
        self.gateway_poll_interval = gateway_poll_interval
        self.gateway_port = gateway_port or _free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.enclave_urls: list[str] = []
        self.root = Ed25519PrivateKey.generate()
        self._tmp = tempfile.TemporaryDirectory(prefix="sealgate-demo-")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._enclave_args: list[list[str]] = []
        self._measurements: dict[tuple[str, ...] | None, str] = {}
        self.access_log: queue.Queue[dict[str, object]] = queue.Queue()

    @property
    def root_public_key(self) -> bytes:
        return self.root.public_key().public_bytes_raw()

    def engine_options(self, models: tuple[str, ...] | None = None) -> list[str]:
        """The enclave command's engine options (what its measurement covers)."""
        options = (
            ["--upstream", self.upstream]
            if self.upstream
            else ["--demo-token-delay", str(self.token_delay)]
        )
        for model in models or ():
            options += ["--model", model]
        return options

    def measurement(self, models: tuple[str, ...] | None = None) -> str:
        """The measurement (hex) of an enclave of this fleet serving ``models``.

        Asked of the enclave's own command, which measures the installed code and the
        engine configuration exactly as the running enclaves do.
        """
        if models not in self._measurements:
            command = [
                sys.executable,
                "-m",
                "sealgate.enclave",
                "--print-measurement",
                *self.engine_options(models),
            ]
            done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
                command, capture_output=True, text=True, timeout=120, check=False
            )
            value = done.stdout.strip().lower()
            try:
                valid = done.returncode == 0 and len(bytes.fromhex(value)) == _MEASUREMENT_SIZE
            except ValueError:
                valid = False
            if not valid:
                problem = done.stderr.strip().splitlines()[-1:] or ["no output"]
                raise DemoError(
                    f"`{' '.join(command[1:])}` gave no measurement (exit {done.returncode}: "
                    f"{problem[0]}); is the enclave extra installed (pip install "
                    "'sealgate[enclave]')?"
                )
            self._measurements[models] = value
        return self._measurements[models]

    def policy(self) -> Policy:
        """Trust this fleet's software root and the measurements of the installed code.

        With several models, each distinct engine configuration is one "release" trusted
        for exactly the models it names.
        """
        if self.models is None:
            return Policy.software(self.root_public_key, self.measurement())
        expected = {self.measurement(m): frozenset(m) for m in self.models}
        return Policy.software(self.root_public_key).with_measurements(
            *(
                ExpectedMeasurement(
                    "software", {"measurement": value}, "demo configuration", models
                )
                for value, models in expected.items()
            )
        )

    def start(self) -> DemoFleet:
        key_file = Path(self._tmp.name) / "software-root.pem"
        key_file.write_bytes(
            self.root.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        try:
            for index in range(self.count):
                port = _free_port()
                args = [
                    sys.executable,
                    "-m",
                    "sealgate.enclave",
                    "--port",
                    str(port),
                    "--software-root-key",
                    str(key_file),
                    "--log-level",
                    "warning",
                    *self.engine_options(None if self.models is None else self.models[index]),
                ]
                self._procs.append(self._spawn(args))
                self._enclave_args.append(args)
                self.enclave_urls.append(f"http://127.0.0.1:{port}")
            for url, proc in zip(self.enclave_urls, self._procs, strict=True):
                _wait_healthy(url, proc)
            gateway_args = [
                sys.executable,
                "-m",
                "sealgate.gateway",
                "--port",
                str(self.gateway_port),
                "--poll-interval",
                str(self.gateway_poll_interval),
                "--log-level",
                "info",
            ]
            for url in self.enclave_urls:
                gateway_args += ["--enclave", url]
            gateway = self._spawn(gateway_args, capture=True)
            self._procs.append(gateway)
            threading.Thread(target=self._read_access_log, args=(gateway,), daemon=True).start()
            _wait_healthy(self.gateway_url, gateway)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, args: list[str], capture: bool = False) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def _read_access_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            record = access_record(line)
            if record is not None:
                self.access_log.put(record)

    def gateway_saw(self, timeout: float = 2.0) -> list[dict[str, object]]:
        """Access-log records the gateway wrote since the last call."""
        records: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                records.append(self.access_log.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return records

    def kill_enclave(self, index: int) -> None:
        """SIGKILL one enclave (for failure demonstrations and tests)."""
        self._procs[index].send_signal(signal.SIGKILL)
        self._procs[index].wait(10)

    def restart_enclave(self, index: int) -> None:
        """Start a killed enclave again on its port (fresh keys, as after a reboot)."""
        if self._procs[index].poll() is None:
            raise DemoError(f"enclave {index} is still running")
        proc = self._spawn(self._enclave_args[index])
        self._procs[index] = proc
        _wait_healthy(self.enclave_urls[index], proc)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        self._procs.clear()
        self._tmp.cleanup()

    def __enter__(self) -> DemoFleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
