"""A raw HTTP/1.1 server on 127.0.0.1 that plays a malicious gateway, byte by byte.

Each path is scripted: a fixed body, or an endless one (with or without a lying
Content-Length). It counts what it actually managed to send, so tests can check
that a client stopped reading, not just that it raised.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

from ..servers import bind_loopback

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Fixed:
    """Answer 200 with this body."""

    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Endless:
    """Answer 200 and send ``prefix`` then filler until the client hangs up or ``bound`` is sent.

    ``content_length`` is announced if given (a hostile server may announce anything).
    """

    prefix: bytes = b""
    content_length: int | None = None
    bound: int = 96 * 1024 * 1024


class HostileServer:
    """Serves ``routes`` (path without query -> behaviour); 404 for anything else."""

    def __init__(self, routes: dict[str, Fixed | Endless]) -> None:
        self.routes = routes
        self.sent: dict[str, int] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._sock = bind_loopback()
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            path = target.split("?", 1)[0]
            with self._lock:
                self.requests.append(target)
            behaviour = self.routes.get(path)
            if behaviour is None:
                conn.sendall(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            elif isinstance(behaviour, Fixed):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s"
                    % (behaviour.content_type.encode(), len(behaviour.body), behaviour.body)
                )
            else:
                self._endless(conn, path, behaviour)

    def _endless(self, conn: socket.socket, path: str, behaviour: Endless) -> None:
        length = (
            b"Content-Length: %d\r\n" % behaviour.content_length
            if behaviour.content_length is not None
            else b""
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sConnection: close\r\n\r\n"
            % length
        )
        filler = b" " * CHUNK
        pending = memoryview(behaviour.prefix + filler)
        sent = 0
        with contextlib.suppress(OSError):
            while sent < behaviour.bound and not self._stop.is_set():
                n = conn.send(pending[: behaviour.bound - sent])
                sent += n
                with self._lock:
                    self.sent[path] = self.sent.get(path, 0) + n
                pending = pending[n:] if n < len(pending) else memoryview(filler)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._acceptor.join(5)
        for worker in self._threads:
            worker.join(5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
