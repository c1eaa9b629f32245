"""A deliberately weakened SDK for the red-team tests: it ignores the final-chunk marker.

Test-only. It swaps the native transport's response opener for one that treats a
stream ending without its final chunk as complete, for as long as the client is open.
"""

from __future__ import annotations

from typing import Any

from sealgate.client import Policy, ResponseIntegrityError, SecureClient, native


class _IgnoresFinalChunk(native.NativeOpening):
    def finish(self) -> list[bytes]:
        try:
            return super().finish()
        except ResponseIntegrityError:
            self.ended = True  # the weakness: a cut stream counts as complete
            return []


class WeakClient(SecureClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._original = native.NativeOpening
        native.NativeOpening = _IgnoresFinalChunk  # type: ignore[misc]

    def close(self) -> None:
        native.NativeOpening = self._original  # type: ignore[misc]
        super().close()


def weak_client(base_url: str, policy: Policy) -> SecureClient:
    """The ``--sdk`` factory the tests pass to ``sealgate redteam``."""
    return WeakClient(base_url, policy, timeout=20, max_attempts=3)
