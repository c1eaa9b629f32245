"""Fleet discovery: static URLs, a TOML file (re-read when it changes) and DNS names.

A DNS source resolves every address behind a name, as a Kubernetes headless Service
exposes its pods, and is re-resolved periodically so that enclaves come and go
without a restart. The resolver is injectable (tests use a fake).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sealgate.protocol.public.logs import fields

__all__ = ["Discovery", "DiscoveryError", "Resolver", "system_resolver", "parse_dns_target"]

log = logging.getLogger("sealgate.gateway.discovery")

Resolver = Callable[[str, int], Awaitable[list[str]]]


class DiscoveryError(Exception):
    """A discovery source is misconfigured (bad TOML, bad DNS target)."""


async def system_resolver(name: str, port: int) -> list[str]:
    """Every IPv4/IPv6 address of ``name`` from the system resolver."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def parse_dns_target(target: str) -> tuple[str, int]:
    """``name:port`` (port defaults to 8080)."""
    name, _, port = target.rpartition(":") if ":" in target else (target, "", "8080")
    if not name or not port.isdigit():
        raise DiscoveryError(f"DNS target must look like name:port, got {target!r}")
    return name, int(port)


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


@dataclass
class Discovery:
    """The union of all sources; ``members()`` returns the current set of enclave URLs."""

    static: Sequence[str] = ()
    file: Path | None = None
    dns: Sequence[str] = ()
    resolver: Resolver = system_resolver
    _file_mtime: float = field(default=-1.0, init=False)
    _file_urls: set[str] = field(default_factory=set, init=False)
    _dns_urls: dict[str, set[str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for target in self.dns:
            parse_dns_target(target)
        for url in self.static:
            if not url.startswith("http://"):
                raise DiscoveryError(f"enclave URL must start with http://, got {url!r}")

    def _read_file(self) -> set[str]:
        assert self.file is not None
        try:
            mtime = self.file.stat().st_mtime
        except OSError as exc:
            log.warning(
                f"cannot read the fleet file: {type(exc).__name__}",
                extra=fields(peer=str(self.file)),
            )
            return self._file_urls
        if mtime == self._file_mtime:
            return self._file_urls
        try:
            data = tomllib.loads(self.file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            log.warning(f"ignoring an invalid fleet file: {exc}", extra=fields(peer=str(self.file)))
            return self._file_urls
        urls = data.get("enclaves", [])
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            log.warning(
                "ignoring a fleet file whose 'enclaves' is not a list of URLs",
                extra=fields(peer=str(self.file)),
            )
            return self._file_urls
        self._file_mtime = mtime
        self._file_urls = {u for u in urls if u.startswith("http://")}
        return self._file_urls

    async def members(self) -> set[str]:
        """Resolve every source now; a failing DNS lookup keeps its last known answer."""
        urls = set(self.static)
        if self.file is not None:
            urls |= self._read_file()
        for target in self.dns:
            name, port = parse_dns_target(target)
            try:
                addresses = await self.resolver(name, port)
                self._dns_urls[target] = {_url(a, port) for a in addresses}
            except OSError as exc:
                log.warning(
                    f"DNS lookup failed ({exc}); keeping the last answer",
                    extra=fields(peer=name, count=len(self._dns_urls.get(target, ()))),
                )
            urls |= self._dns_urls.get(target, set())
        return urls

    @staticmethod
    def load_file(path: Path) -> dict[str, object]:
        """Parse a fleet TOML file (``enclaves = [...]``, ``dns = [...]``)."""
        try:
            return tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DiscoveryError(f"cannot read fleet file {path}: {exc}") from None
