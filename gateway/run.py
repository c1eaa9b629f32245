"""Running gateway workers: event loop, signals, graceful drain, optional pre-forked workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from .config import GatewayConfig
from .discovery import Discovery
from .server import Gateway

__all__ = ["bind", "run_worker", "run"]

log = logging.getLogger("sealgate.gateway")


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket (IPv6 if ``host`` contains a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows or a minimal install
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def _serve(config: GatewayConfig, discovery: Discovery, sock: socket.socket) -> None:
    gateway = Gateway(config, discovery)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start(sock)
    log.info(
        "gateway worker %d serving on %s with %d enclaves (%d healthy)",
        os.getpid(),
        sock.getsockname(),
        len(gateway.fleet.members),
        gateway.fleet.healthy_count(),
    )
    await stop.wait()
    log.info("draining %d connections", len(gateway.connections))
    await gateway.shutdown()


def run_worker(config: GatewayConfig, discovery: Discovery, sock: socket.socket) -> None:
    """Serve until SIGTERM/SIGINT, then drain."""
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(config, discovery, sock))
    finally:
        loop.close()


def run(
    config: GatewayConfig, discovery: Discovery, host: str, port: int, workers: int = 1
) -> None:
    """Serve with ``workers`` processes sharing one listening socket."""
    sock = bind(host, port, reuse_port=workers > 1)
    if workers <= 1:
        run_worker(config, discovery, sock)
        return
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child process
            code = 0
            try:
                run_worker(config, discovery, sock)
            except BaseException:  # noqa: BLE001 - the child must exit, never return to the parent's code
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    sys.exit(status)
