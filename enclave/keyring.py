"""The enclave's HPKE keys: made in memory, rotated on a schedule, retired after a grace period.

Each generation is a pair with consecutive key ids: an X25519 key (EHBP clients speak
only X25519; listed first, so it stays :attr:`KeyRing.current`) and a post-quantum
MLKEM768-X25519 key, which the native-mode SDK prefers. Both go into the key-config
list, so attestation binds both; they rotate and retire together.
``KeyRing(post_quantum=False)`` makes X25519 keys only.

Keys never leave this object: there is no export, and reprs are redacted. Clients
address a key by fingerprint (the native mode's ``Sealgate-Key-Id``) or by trial
(EHBP, current key first). A retired key is forgotten, so requests sealed to it get
the key-config problem and the client re-attests.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sealgate.protocol.public.keyconfig import KeyConfig, encode_key_configs
from sealgate.protocol.sealing.hpke import EnclaveKey, HybridPrivateKey, PrivateKey

__all__ = ["KeyRing", "ActiveKey"]


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """A key with its public config and the time after which it no longer decrypts."""

    private: EnclaveKey
    config: KeyConfig
    created_at: float
    retire_at: float | None  # None while it is the current key

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint


class KeyRing:
    """Current key plus previous keys still inside their grace period."""

    def __init__(
        self,
        rotate_every: float | None = None,
        grace: float = 300.0,
        clock: Callable[[], float] = time.time,
        *,
        post_quantum: bool = True,
    ) -> None:
        if rotate_every is not None and rotate_every <= 0:
            raise ValueError("rotate_every must be positive (or None to never rotate)")
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.rotate_every = rotate_every
        self.grace = grace
        self.post_quantum = post_quantum
        self._clock = clock
        self._lock = threading.Lock()
        self._next_id = secrets.randbelow(256)
        self._keys: list[ActiveKey] = []
        self.generation = 0
        self._add_current()

    def _add_current(self) -> None:
        made: list[EnclaveKey] = [PrivateKey.generate()]
        if self.post_quantum:
            made.append(HybridPrivateKey.generate())
        now = self._clock()
        fresh = []
        for key in made:
            fresh.append(ActiveKey(key, key.key_config(self._next_id), now, None))
            self._next_id = (self._next_id + 1) % 256
        self._keys[:0] = fresh
        self.generation += 1

    @property
    def current(self) -> ActiveKey:
        """The current X25519 key: the bare config EHBP clients fetch, the classical fallback."""
        return self._keys[0]

    @property
    def current_hybrid(self) -> ActiveKey | None:
        """The current MLKEM768-X25519 key (None when made with ``post_quantum=False``)."""
        return next((k for k in self._keys if k.retire_at is None and k.config.post_quantum), None)

    def active(self, kem_id: int | None = None) -> tuple[ActiveKey, ...]:
        """Every key that still decrypts (only ``kem_id``'s if given), current first."""
        self.expire()
        return tuple(k for k in self._keys if kem_id is None or k.config.kem_id == kem_id)

    def encoded_configs(self) -> bytes:
        """The ``application/ohttp-keys`` list of all active keys (what attestation binds)."""
        return encode_key_configs(k.config for k in self.active())

    def lookup(self, fingerprint: str, kem_id: int | None = None) -> ActiveKey | None:
        """The active key with this fingerprint (and KEM, if given), if any."""
        for key in self.active(kem_id):
            if key.fingerprint == fingerprint:
                return key
        return None

    def rotate(self) -> ActiveKey:
        """Make new current keys; the old ones keep decrypting for ``grace`` seconds."""
        with self._lock:
            retire_at = self._clock() + self.grace
            self._keys = [
                k if k.retire_at is not None else replace(k, retire_at=retire_at)
                for k in self._keys
            ]
            self._add_current()
            return self._keys[0]

    def expire(self) -> bool:
        """Forget keys past their grace period; True if any was forgotten."""
        with self._lock:
            now = self._clock()
            kept = [k for k in self._keys if k.retire_at is None or k.retire_at > now]
            changed = len(kept) != len(self._keys)
            if changed:
                self._keys = kept
                self.generation += 1
            return changed

    def maybe_rotate(self) -> bool:
        """Rotate if the current key is older than ``rotate_every``; expire old keys."""
        expired = self.expire()
        if self.rotate_every is None:
            return expired
        if self._clock() - self.current.created_at >= self.rotate_every:
            self.rotate()
            return True
        return expired

    def __repr__(self) -> str:
        return f"KeyRing(keys={[k.fingerprint for k in self._keys]})"
