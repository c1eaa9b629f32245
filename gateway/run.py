"""Running gateway workers: event loop, signals, graceful drain, optional pre-forked workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from sealgate.protocol.public.logs import fields

from .config import GatewayConfig
from .discovery import Discovery
from .metrics import mark_worker_dead
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


async def _serve(
    config: GatewayConfig, discovery: Discovery, sock: socket.socket, metrics_dir: Path | None
) -> None:
    gateway = Gateway(config, discovery, metrics_dir=metrics_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start(sock)
    host, port = sock.getsockname()[:2]
    log.info(
        f"worker {os.getpid()} serving with {gateway.fleet.healthy_count()} healthy enclaves",
        extra=fields(peer=f"{host}:{port}", count=len(gateway.fleet.members)),
    )
    await stop.wait()
    log.info("draining", extra=fields(count=len(gateway.plane.connections)))
    await gateway.shutdown()


def run_worker(
    config: GatewayConfig,
    discovery: Discovery,
    sock: socket.socket,
    metrics_dir: Path | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain."""
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(config, discovery, sock, metrics_dir))
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
    # Every worker publishes its metrics here, so that any worker's /metrics sums them all:
    # fresh for this run (no counts from an earlier one), removed when it ends.
    try:
        metrics_dir: Path | None = Path(tempfile.mkdtemp(prefix="sealgate-gateway-metrics-"))
    except OSError as exc:
        metrics_dir = None
        log.warning(
            f"no writable temporary directory ({exc}): /metrics shows one worker's counts; "
            "mount a writable /tmp or set TMPDIR"
        )
    try:
        status = _supervise(config, discovery, sock, workers, metrics_dir)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(status)


def _supervise(
    config: GatewayConfig,
    discovery: Discovery,
    sock: socket.socket,
    workers: int,
    metrics_dir: Path | None,
) -> int:
    """Fork the workers, forward signals to them, and wait for all of them to exit."""
    children: set[int] = set()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child process
            code = 0
            try:
                run_worker(config, discovery, sock, metrics_dir)
            except BaseException:  # noqa: BLE001 - the child must exit, never return to the parent's code
                code = 1
            os._exit(code)
        children.add(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        if metrics_dir is not None:
            mark_worker_dead(metrics_dir, pid)  # its counts stay, its gauges leave the sums
        code = os.waitstatus_to_exitcode(wait_status)
        if code:
            log.warning(f"worker {pid} exited with {code}", extra=fields(count=len(children)))
        status = status or code
    return status
