"""``SecureClient``: verify a fleet through a gateway, then hand out clients that seal everything.

::

    from sealgate.client import Policy, SecureClient

    secure = SecureClient("https://api.example.com", Policy.from_release(repo="org/enclave"))
    client = secure.openai()            # an openai.OpenAI; every request is sealed
    client.chat.completions.create(model="...", messages=[...], stream=True)

The ``openai`` SDK is used unchanged: it gets an HTTP client whose transport seals.
openai 1.x/2.x use httpx; openai 3.x uses httpx2 — both are supported.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

import httpx
from sealgate.protocol.public.modes import EHBP, Mode

from .drivers import flavour
from .errors import PostQuantumModeRequired
from .fleet import Fleet, gateway_root
from .models import router
from .native import OHTTP, AsyncNativeTransport, NativeTransport
from .policy import Policy
from .transport import AsyncEhbpTransport, EhbpTransport
from .verification import Verification

__all__ = ["SecureClient"]


def _openai_http_module() -> ModuleType:
    """The HTTP library the installed openai SDK is built on (httpx or httpx2)."""
    import openai

    base = openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0]
    return importlib.import_module(base)


class SecureClient:
    """Verifies the fleet behind ``gateway_url`` and makes sealing HTTP and OpenAI clients.

    Nothing is sent to an enclave whose evidence did not verify against ``policy``;
    with no verified enclave every request fails with ``NoVerifiedEnclave`` before
    anything leaves the process. ``mode`` is ``"ohttp"`` (default): the native mode, where
    the whole request - method, path, headers including ``Authorization``, body - is
    sealed (:mod:`.native`); or ``EHBP`` (``"ehbp"``): Tinfoil's body-only compatibility
    mode (method, path, headers and status cross the gateway in the clear, so secret
    headers are dropped unless ``forward_secret_headers``; no end-of-message marker, no
    replay protection). The native mode seals to the enclave's post-quantum
    MLKEM768-X25519 key when it offers one; with ``Policy(require_post_quantum=True)``
    only such enclaves, and only the native mode, are accepted.

    Requests go only to enclaves trusted with the model they name (:mod:`.models`).
    ``cache_affinity=True`` keeps each conversation on one enclave by a routing tag keyed
    with ``affinity_secret`` (random per client when not given; share one per tenant to
    share caches across its clients): see :mod:`.affinity` for what the gateway learns.

    ``recipients`` (native mode; default 3, at most 8): each request is sealed once and
    its key wrapped to that many verified enclaves serving its model, so the gateway can
    fail over between them without a round trip back here
    (:mod:`sealgate.protocol.sealing.multi_recipient`). A malicious gateway could then have it
    executed once per candidate; ``recipients=1`` is plain chunked OHTTP (the
    standards path) and at-most-once.
    """

    def __init__(
        self,
        gateway_url: str,
        policy: Policy,
        *,
        mode: Mode | str = OHTTP,
        timeout: float = 120.0,
        max_attempts: int = 4,
        forward_secret_headers: bool = False,
        refresh_interval: float = 30.0,
        cache_affinity: bool = False,
        affinity_secret: bytes | None = None,
        recipients: int = 3,
    ) -> None:
        if mode == EHBP.name:
            mode = EHBP
        if mode != OHTTP and mode is not EHBP:
            raise ValueError(
                f"unknown mode {mode!r}: use {OHTTP!r} (native, the default) or EHBP; the "
                "body-only sealgate v1 mode was removed (the native mode covers it)"
            )
        if policy.require_post_quantum and mode != OHTTP:
            raise PostQuantumModeRequired(
                "the policy requires post-quantum keys, but EHBP seals only to X25519: "
                "use the native mode (the default)"
            )
        root, note = gateway_root(gateway_url)
        if note is not None:
            warnings.warn(note, UserWarning, stacklevel=2)
        self.gateway_url = root
        self.policy = policy
        self.timeout = timeout
        self._options: dict[str, Any] = {
            "mode": mode,
            "max_attempts": max_attempts,
            "forward_secret_headers": forward_secret_headers,
        }
        routing = router(cache_affinity, affinity_secret)
        if cache_affinity and mode != OHTTP:
            raise ValueError("cache_affinity needs the native mode (mode='ohttp', the default)")
        if mode == OHTTP:  # native mode: secret headers are sealed, so they are always kept
            self._options = {
                "max_attempts": max_attempts,
                "router": routing,
                "recipients": recipients,
            }
        self._native = mode == OHTTP
        self.fleet = Fleet(self.gateway_url, policy, refresh_interval=refresh_interval)

    def verify(self) -> list[Verification]:
        """Fetch and verify the fleet now: a record for every listed enclave, verified or refused.

        A refused enclave (``record.ok`` is false) never affects the others: requests go
        to the verified ones. Raises :class:`FleetUnavailable` only when the directory as a
        whole cannot be fetched or parsed.
        """
        self.fleet.refresh()
        return self.fleet.records()

    def transport(self, inner: Any = None, *, http: ModuleType = httpx) -> Any:
        """A synchronous sealing transport (for ``http.Client(transport=...)``)."""
        sync = NativeTransport if self._native else EhbpTransport
        return flavour(sync, http)(self.fleet, inner, **self._options)

    def async_transport(self, inner: Any = None, *, http: ModuleType = httpx) -> Any:
        """An asynchronous sealing transport (for ``http.AsyncClient(transport=...)``)."""
        async_ = AsyncNativeTransport if self._native else AsyncEhbpTransport
        return flavour(async_, http)(self.fleet, inner, **self._options)

    def httpx_client(self, *, http: ModuleType = httpx, **kwargs: Any) -> Any:
        """An ``httpx.Client`` (or httpx2) whose requests to the gateway are sealed."""
        kwargs.setdefault("base_url", self.gateway_url)
        kwargs.setdefault("timeout", self.timeout)
        return http.Client(transport=self.transport(http=http), **kwargs)

    def async_httpx_client(self, *, http: ModuleType = httpx, **kwargs: Any) -> Any:
        """An ``httpx.AsyncClient`` (or httpx2) whose requests to the gateway are sealed."""
        kwargs.setdefault("base_url", self.gateway_url)
        kwargs.setdefault("timeout", self.timeout)
        return http.AsyncClient(transport=self.async_transport(http=http), **kwargs)

    def openai(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` whose every request is sealed to a verified enclave."""
        import openai

        http = _openai_http_module()
        kwargs.setdefault("base_url", self.gateway_url + "/v1")
        # Sealed inside the request in the native mode; dropped by the body-only modes.
        kwargs.setdefault("api_key", "sealgate")
        kwargs.setdefault("http_client", self.httpx_client(http=http))
        return openai.OpenAI(**kwargs)

    def async_openai(self, **kwargs: Any) -> Any:
        """An ``openai.AsyncOpenAI`` whose every request is sealed to a verified enclave."""
        import openai

        http = _openai_http_module()
        kwargs.setdefault("base_url", self.gateway_url + "/v1")
        kwargs.setdefault("api_key", "sealgate")
        kwargs.setdefault("http_client", self.async_httpx_client(http=http))
        return openai.AsyncOpenAI(**kwargs)

    def close(self) -> None:
        self.fleet.close()

    def __enter__(self) -> SecureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
