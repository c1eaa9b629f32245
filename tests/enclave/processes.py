"""``python -m sealgate.enclave`` as a real process, for the tests that need the command itself."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..servers import wait_healthy


class EnclaveProcess:
    """The enclave command on a free port: its start-up lines, its URL, its stderr in a file.

    Start-up waits at most ``start_timeout`` seconds for the ``listening:`` line (a process
    that hangs fails the test instead of hanging it); ``healthy=False`` returns as soon as
    the address is printed, before anything has been asked of the server.
    """

    def __init__(
        self,
        tmp_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python: Sequence[str] = ("-m", "sealgate.enclave"),
        *,
        healthy: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        self.stderr_path = tmp_path / f"enclave-{len(list(tmp_path.iterdir()))}.stderr"
        self._stderr = self.stderr_path.open("wb")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SEALGATE_ENCLAVE_")}
        environment.update({"PYTHONUNBUFFERED": "1", "SEALGATE_ENCLAVE_PORT": "0", **(env or {})})
        self.proc = subprocess.Popen(
            [sys.executable, *python, *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=environment,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout: list[str] = []
        deadline = time.monotonic() + start_timeout
        while not self.stdout or not self.stdout[-1].startswith("listening: "):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise AssertionError(f"the enclave did not start:\n{self.stderr()}")
            self.stdout.append(line)
        self.url = self.stdout[-1].removeprefix("listening: ").strip()
        if healthy:
            wait_healthy(self.url)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self._reader.join(10)
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text()
