"""The enclave's HPKE keys: made in memory, rotated on a schedule, retired after a grace period.

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
from dataclasses import dataclass

from sealgate.protocol.hpke import PrivateKey
from sealgate.protocol.keyconfig import KeyConfig, encode_key_configs

__all__ = ["KeyRing", "ActiveKey"]


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """A key with its public config and the time after which it no longer decrypts."""

    private: PrivateKey
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
    ) -> None:
        if rotate_every is not None and rotate_every <= 0:
            raise ValueError("rotate_every must be positive (or None to never rotate)")
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.rotate_every = rotate_every
        self.grace = grace
        self._clock = clock
        self._lock = threading.Lock()
        self._next_id = secrets.randbelow(256)
        self._keys: list[ActiveKey] = []
        self.generation = 0
        self._add_current()

    def _add_current(self) -> None:
        key = PrivateKey.generate()
        config = key.key_config(self._next_id)
        self._next_id = (self._next_id + 1) % 256
        self._keys.insert(0, ActiveKey(key, config, self._clock(), None))
        self.generation += 1

    @property
    def current(self) -> ActiveKey:
        """The key new requests should be sealed to."""
        return self._keys[0]

    def active(self) -> tuple[ActiveKey, ...]:
        """Every key that still decrypts, current first."""
        self.expire()
        return tuple(self._keys)

    def encoded_configs(self) -> bytes:
        """The ``application/ohttp-keys`` list of all active keys (what attestation binds)."""
        return encode_key_configs(k.config for k in self.active())

    def lookup(self, fingerprint: str) -> ActiveKey | None:
        """The active key with this fingerprint, if any."""
        for key in self.active():
            if key.fingerprint == fingerprint:
                return key
        return None

    def rotate(self) -> ActiveKey:
        """Make a new current key; the old one keeps decrypting for ``grace`` seconds."""
        with self._lock:
            now = self._clock()
            old = self._keys[0]
            self._keys[0] = ActiveKey(old.private, old.config, old.created_at, now + self.grace)
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
