"""Nonce batching: one hardware report answers every client nonce that arrived in a short window.

An enclave collects the 32-byte client nonces ``D[0..n-1]`` (distinct, in arrival
order) of one window and commits to all of them with a Merkle tree. Hashes are
SHA-256; ``u32`` is 4 bytes big-endian; ``TAG`` is ``"sealgate nonce batch v1"``::

    leaf(d)      = SHA-256(TAG || 0x00 || d)
    node(l, r)   = SHA-256(TAG || 0x01 || l || r)
    MTH({d})     = leaf(d)
    MTH(D[0:n])  = node(MTH(D[0:k]), MTH(D[k:n]))     k: largest power of two < n
    root(D)      = SHA-256(TAG || 0x02 || u32(n) || MTH(D))
    bound nonce  = "sealgate-batch:" || root(D)       (47 bytes)

The tree shape and the inclusion proof (audit path) of leaf ``i`` are those of
RFC 9162 §2.1.1 and §2.1.3.1; a verifier recomputes ``MTH`` from its own nonce,
``i``, ``n`` and the path with the algorithm of RFC 9162 §2.1.3.2 (which also
rejects a path of the wrong length), then ``root``. The enclave puts the bound
nonce into the ``nonce`` field of report_data
(:func:`~sealgate.protocol.evidence.binding.report_data`), so one report proves that every
nonce of the batch existed before the report was made.

Domain separation: the 0x00 / 0x01 / 0x02 bytes keep leaves, inner nodes and the
root apart (no second preimage by presenting a node as a leaf), and the root
commits to ``n`` so a proof cannot be replayed against a different tree size. The
bound nonce is 47 bytes with its own prefix, while a client nonce is exactly 32
bytes and a time nonce starts with ``sealgate-time:``: none can stand for another.
A batch of one is never sent as a batch; the enclave binds that nonce directly.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..public.errors import InvalidNonceProof

__all__ = [
    "NonceBatch",
    "NonceProof",
    "BATCH_PREFIX",
    "NONCE_SIZE",
    "MAX_BATCH_SIZE",
    "is_batch_nonce",
]

TAG = b"sealgate nonce batch v1"
BATCH_PREFIX = b"sealgate-batch:"
#: Size of a client nonce (the enclave's route accepts exactly 64 hex digits).
NONCE_SIZE = 32
#: Largest batch either side accepts: paths are at most 12 hashes long.
MAX_BATCH_SIZE = 4096
_HASH_SIZE = 32


def _leaf(nonce: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x00" + nonce).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x01" + left + right).digest()


def _root(size: int, tree_hash: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x02" + struct.pack(">I", size) + tree_hash).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _path_length(index: int, size: int) -> int:
    """How many hashes the audit path of leaf ``index`` in a tree of ``size`` leaves has."""
    length = 0
    while size > 1:
        k = _split(size)
        if index < k:
            size = k
        else:
            index, size = index - k, size - k
        length += 1
    return length


def is_batch_nonce(bound: bytes) -> bool:
    """Whether a bound nonce is a batch root (rather than a client or time nonce)."""
    return len(bound) == len(BATCH_PREFIX) + _HASH_SIZE and bound.startswith(BATCH_PREFIX)


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_SIZE:
        raise InvalidNonceProof(f"a batched client nonce must be {NONCE_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class NonceProof:
    """One client's share of a batch: its nonce, its leaf index, the batch size and audit path."""

    nonce: bytes
    index: int
    size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_nonce(self.nonce)
        if not 2 <= self.size <= MAX_BATCH_SIZE:
            raise InvalidNonceProof(f"a nonce batch has 2 to {MAX_BATCH_SIZE} nonces")
        if not 0 <= self.index < self.size:
            raise InvalidNonceProof("the leaf index is outside the batch")
        if len(self.path) != _path_length(self.index, self.size):
            raise InvalidNonceProof("the audit path has the wrong length for this index and size")
        if any(len(h) != _HASH_SIZE for h in self.path):
            raise InvalidNonceProof("every audit path entry must be a 32-byte SHA-256 digest")

    def root(self, nonce: bytes | None = None) -> bytes:
        """The batch root this proof leads to from ``nonce`` (default: its own), RFC 9162 §2.1.3.2."""
        leaf_nonce = self.nonce if nonce is None else nonce
        _check_nonce(leaf_nonce)
        fn, sn = self.index, self.size - 1
        r = _leaf(leaf_nonce)
        for p in self.path:
            if sn == 0:
                raise InvalidNonceProof("the audit path is longer than the tree is deep")
            if fn & 1 or fn == sn:
                r = _node(p, r)
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
            else:
                r = _node(r, p)
            fn >>= 1
            sn >>= 1
        if sn != 0:
            raise InvalidNonceProof("the audit path is shorter than the tree is deep")
        return _root(self.size, r)

    def bound_nonce(self, nonce: bytes | None = None) -> bytes:
        """What report_data must bind if ``nonce`` (default: its own) is in this batch."""
        return BATCH_PREFIX + self.root(nonce)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (hex strings and integers)."""
        return {
            "nonce": self.nonce.hex(),
            "index": self.index,
            "size": self.size,
            "path": [h.hex() for h in self.path],
        }

    def to_json(self) -> bytes:
        """Serialize to UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, body: object) -> NonceProof:
        """Validate and decode a parsed JSON object; raises :class:`InvalidNonceProof`."""
        if not isinstance(body, Mapping):
            raise InvalidNonceProof("'nonce_proof' must be a JSON object")
        index, size, path = body.get("index"), body.get("size"), body.get("path")
        if type(index) is not int or type(size) is not int:
            raise InvalidNonceProof("'nonce_proof' index and size must be integers")
        if not isinstance(path, list) or len(path) > MAX_BATCH_SIZE.bit_length():
            raise InvalidNonceProof("'nonce_proof.path' must be a short list of hex digests")
        return cls(
            nonce=_unhex(body.get("nonce"), "nonce_proof.nonce"),
            index=index,
            size=size,
            path=tuple(_unhex(h, "nonce_proof.path") for h in path),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> NonceProof:
        """Parse UTF-8 JSON."""
        if len(data) > 4096:
            raise InvalidNonceProof("nonce proof is too large")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidNonceProof("nonce proof is not JSON") from None
        return cls.from_dict(body)


def _unhex(value: object, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * NONCE_SIZE:
        raise InvalidNonceProof(f"'{name}' must be a hex string of at most {NONCE_SIZE} bytes")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidNonceProof(f"'{name}' is not valid hex") from None


@dataclass(frozen=True, slots=True)
class NonceBatch:
    """The Merkle tree over one window's distinct client nonces (build with :meth:`of`)."""

    nonces: tuple[bytes, ...]
    #: MTH of every subtree the RFC 9162 split produces, keyed by ``(start, end)``.
    _subtrees: Mapping[tuple[int, int], bytes] = field(repr=False, compare=False)

    @classmethod
    def of(cls, nonces: Iterable[bytes]) -> NonceBatch:
        """Hash the tree once; raises :class:`InvalidNonceProof` for duplicates or bad sizes."""
        leaves = tuple(nonces)
        if not 2 <= len(leaves) <= MAX_BATCH_SIZE:
            raise InvalidNonceProof(f"a nonce batch has 2 to {MAX_BATCH_SIZE} nonces")
        for nonce in leaves:
            _check_nonce(nonce)
        if len(set(leaves)) != len(leaves):
            raise InvalidNonceProof("a nonce batch must not hold the same nonce twice")
        subtrees: dict[tuple[int, int], bytes] = {}

        def mth(start: int, end: int) -> bytes:
            if end - start == 1:
                digest = _leaf(leaves[start])
            else:
                k = start + _split(end - start)
                digest = _node(mth(start, k), mth(k, end))
            subtrees[start, end] = digest
            return digest

        mth(0, len(leaves))
        return cls(leaves, subtrees)

    @property
    def size(self) -> int:
        """Number of nonces in the batch."""
        return len(self.nonces)

    @property
    def root(self) -> bytes:
        """The 32-byte commitment to every nonce and the batch size."""
        return _root(self.size, self._subtrees[0, self.size])

    @property
    def bound_nonce(self) -> bytes:
        """The value the enclave binds into report_data for this batch."""
        return BATCH_PREFIX + self.root

    def proof(self, index: int) -> NonceProof:
        """The inclusion proof of leaf ``index`` (RFC 9162 §2.1.3.1 PATH, leaf-first)."""
        if not 0 <= index < self.size:
            raise IndexError("leaf index outside the batch")
        path: list[bytes] = []
        start, end, m = 0, self.size, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append(self._subtrees[start + k, end])
                end = start + k
            else:
                path.append(self._subtrees[start, start + k])
                start, m = start + k, m - k
        path.reverse()  # the RFC lists siblings from the leaf up
        return NonceProof(self.nonces[index], index, self.size, tuple(path))
