"""Polls every enclave: health and load, its key list, and its published attestation document.

Only public data crosses here. Keys are decoded with the protocol's key-config
parser (which holds no secrets) and named by fingerprint for routing. A failed
poll opens the member's circuit breaker; the next probe waits for its backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
from sealgate.protocol.public import paths
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.keyconfig import decode_key_configs
from sealgate.protocol.public.logs import fields

from .fleet import Fleet, Member

__all__ = ["Poller"]

log = logging.getLogger("sealgate.gateway.poller")

_MAX_DOCUMENT_BYTES = 256 * 1024


class Poller:
    """One round of probes at a time, all members in parallel."""

    def __init__(self, fleet: Fleet, *, timeout: float, attestation_refresh: float) -> None:
        self.fleet = fleet
        self.attestation_refresh = attestation_refresh
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._fetched_at: dict[str, float] = {}

    async def poll_all(self) -> None:
        members = [m for m in self.fleet.members.values() if self.fleet.due_for_probe(m)]
        await asyncio.gather(*(self.poll(m) for m in members))

    async def poll(self, member: Member) -> None:
        try:
            health = await self._client.get(member.url + paths.HEALTH)
            health.raise_for_status()
            load = float(health.json().get("load", 0.0))
            keys_response = await self._client.get(member.url + paths.OHTTP_KEYS)
            keys_response.raise_for_status()
            keys = tuple(k.fingerprint for k in decode_key_configs(keys_response.content))
            document = await self._document(member, keys)
        except (httpx.HTTPError, ValueError, ProtocolError, AttributeError) as exc:
            was_healthy = member.healthy
            self.fleet.fail(member, f"poll failed: {type(exc).__name__}")
            if was_healthy:
                log.warning(
                    f"enclave left the routing table: {type(exc).__name__}",
                    extra=fields(enclave_id=member.id, peer=member.url),
                )
            return
        was_healthy = member.healthy
        self.fleet.update(member, keys, load, document)
        if not was_healthy:
            log.info(
                "enclave healthy",
                extra=fields(
                    enclave_id=member.id,
                    peer=member.url,
                    key_id=",".join(k[:16] for k in keys),
                    count=len(keys),
                ),
            )

    async def _document(self, member: Member, keys: tuple[str, ...]) -> bytes | None:
        fetched = self._fetched_at.get(member.url, 0.0)
        fresh = time.monotonic() - fetched < self.attestation_refresh
        if member.attestation is not None and keys == member.keys and fresh:
            return None  # keep the one we have
        response = await self._client.get(member.url + paths.ATTESTATION)
        response.raise_for_status()
        if len(response.content) > _MAX_DOCUMENT_BYTES:
            raise ValueError("attestation document too large")
        json.loads(response.content)  # must at least be JSON; clients verify the rest
        self._fetched_at[member.url] = time.monotonic()
        return response.content

    def forget(self, url: str) -> None:
        self._fetched_at.pop(url, None)

    async def aclose(self) -> None:
        await self._client.aclose()
