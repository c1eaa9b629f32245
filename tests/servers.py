"""Real servers for tests: uvicorn on 127.0.0.1, in a thread or in a separate process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def free_port() -> int:
    with contextlib.closing(bind_loopback()) as sock:
        return int(sock.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn in a background thread, on a free loopback port."""

    def __init__(
        self, app: object, host: str = "127.0.0.1", port: int = 0, **config: object
    ) -> None:
        import uvicorn

        self._sock = bind_loopback(host, port)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        options = {
            "log_level": "warning",
            "lifespan": "on",
            "access_log": False,
            "timeout_keep_alive": 30,
            # uvicorn's "auto" installs uvloop's policy for the whole process (before 0.36),
            # which leaks into the async tests' own event loops.
            "loop": "asyncio",
        }
        options.update(config)
        self.server = uvicorn.Server(uvicorn.Config(app, **options))  # type: ignore[arg-type]
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_healthy(url: str, path: str = "/healthz", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become healthy")
        time.sleep(0.05)


@contextlib.contextmanager
def process(
    args: list[str], url: str, health: str = "/healthz"
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m ...`` style args as a child process until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        try:
            wait_healthy(url, health)
        except RuntimeError:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise RuntimeError(
                f"process failed to start: {err.decode(errors='replace')[-2000:]}"
            ) from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


class GatewayThread:
    """A sealgate gateway on its own event loop in a background thread, on a free port."""

    def __init__(self, discovery: object, config: object | None = None) -> None:
        import asyncio

        from sealgate.gateway import Gateway, GatewayConfig
        from sealgate.gateway.run import bind

        self._sock = bind("127.0.0.1", 0)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateway = Gateway(config or GatewayConfig(poll_interval=0.2), discovery)  # type: ignore[arg-type]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: object, timeout: float = 30) -> object:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> GatewayThread:
        self._thread.start()
        self.call(self.gateway.start(self._sock))
        return self

    def stop(self) -> None:
        self.call(self.gateway.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def refresh(self) -> None:
        """Run discovery and one poll round now (instead of waiting for the timers)."""
        self.call(self.gateway.refresh_members())
        self.call(self.gateway.poller.poll_all())

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
