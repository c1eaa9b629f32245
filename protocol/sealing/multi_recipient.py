"""Multi-recipient requests: sealed once, openable by any of N attested enclaves.

sealgate's extension of chunked OHTTP (negotiated by media type
``message/sealgate-multi-req``; single-recipient chunked OHTTP stays the standard path)
that lets the untrusted gateway fail over between enclaves without a client round trip:

1. The client draws a random 32-byte data key ``dk``.
2. For each candidate key ``i`` (1..8, see :mod:`.multi_header`):
   ``enc_i, ctx_i = SetupBaseS(pk_i, "sealgate multi request" || 0x00 || hdr_i)``.
3. ``binding = SHA-256("sealgate multi-recipient v1" || n || (fp_i || hdr_i || enc_i)*)``;
   each candidate gets ``wrapped_i = ctx_i.Seal(aad=binding, dk)``.
4. The body is chunked exactly like a chunked OHTTP request, but under AES-256-GCM with
   ``key, nonce = Expand(Extract(binding, dk), "key" | "nonce")``, chunk ``c`` sealed with
   nonce ``nonce XOR c``, the final chunk with AAD ``"final"``.
5. The enclave that answers is named, and authenticated, by the response key:
   ``secret = ctx_i.Export("sealgate multi response", 32)`` and then the chunked OHTTP
   response schedule (``Extract(enc_i || response_nonce, secret)``). The response is
   ``fp_i || response_nonce || chunks``. Only candidate ``i`` and the client hold
   ``ctx_i``: another candidate cannot answer in its name, a non-candidate not at all.

Each candidate's replay cache remembers its own ``enc_i``, so a malicious gateway can
have one request executed at most once per candidate (N times in total); N = 1 gives
at-most-once.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..public.errors import (
    DecryptionFailed,
    EncoderStateError,
    SequenceOverflow,
    TruncatedMessage,
    UnknownKey,
)
from ..public.keyconfig import KeyConfig
from ..public.multi_header import MAX_CANDIDATES, Candidate, MultiHeader, binding_of
from .hpke import EnclaveKey
from .ohttp import (
    DEFAULT_MAX_CHUNK,
    SEND_CHUNK,
    ChunkedResponseOpener,
    ChunkedResponseSealer,
    HpkeContext,
    KeyLookup,
    RequestHeader,
    _ChunkReader,
    _recipient,
    _seal_chunks,
    _seal_final_chunks,
    _sender,
)

__all__ = ["MultiRequestSealer", "MultiRequestOpener", "MultiResponseOpener"]

_REQUEST_LABEL = b"sealgate multi request"
_RESPONSE_LABEL = b"sealgate multi response"
_FINAL = b"final"
DATA_KEY_SIZE = 32


class _BodyAead:
    """AES-256-GCM keyed from the data key and the binding, with a chunk counter."""

    __slots__ = ("_aead", "_base", "counter")

    def __init__(self, data_key: bytes, binding: bytes) -> None:
        prk = hmac.new(binding, data_key, sha256).digest()
        self._aead = AESGCM(HKDFExpand(hashes.SHA256(), 32, b"key").derive(prk))
        self._base = int.from_bytes(HKDFExpand(hashes.SHA256(), 12, b"nonce").derive(prk))
        self.counter = 0

    def _nonce(self) -> bytes:
        if self.counter >= 1 << 96:
            raise SequenceOverflow("request chunk counter exhausted")
        return (self._base ^ self.counter).to_bytes(12, "big")

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        sealed = self._aead.encrypt(self._nonce(), plaintext, aad)
        self.counter += 1
        return sealed

    def open(self, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed(
                "request chunk failed authentication (tampered, reordered or spliced)"
            ) from None
        self.counter += 1
        return plaintext

    def __repr__(self) -> str:
        return "_BodyAead(<redacted>)"


class MultiRequestSealer:
    """Client: ``header`` first, then ``seal`` per piece, then ``seal_final``."""

    def __init__(self, configs: Sequence[KeyConfig], *, chunk_size: int = SEND_CHUNK) -> None:
        if not 1 <= len(configs) <= MAX_CANDIDATES:
            raise ValueError(f"a request is wrapped to 1..{MAX_CANDIDATES} candidates")
        if len({c.fingerprint for c in configs}) != len(configs):
            raise ValueError("candidates must be distinct keys")
        data_key = os.urandom(DATA_KEY_SIZE)
        contexts = []
        unwrapped: list[Candidate] = []
        for config in configs:
            header, context = _sender(config, _REQUEST_LABEL, None, None)
            contexts.append((header, context))
            unwrapped.append(
                Candidate(
                    config.fingerprint,
                    header.key_id,
                    header.kem_id,
                    header.kdf_id,
                    header.aead_id,
                    header.enc,
                    b"",
                )
            )
        binding = binding_of(unwrapped)
        candidates = tuple(
            Candidate(
                c.fingerprint,
                c.key_id,
                c.kem_id,
                c.kdf_id,
                c.aead_id,
                c.enc,
                context.seal(data_key, binding),
            )
            for c, (_, context) in zip(unwrapped, contexts, strict=True)
        )
        self.multi_header = MultiHeader(candidates)
        self.header = self.multi_header.to_bytes()
        self.fingerprints = tuple(c.fingerprint for c in candidates)
        self._contexts = {c.fingerprint: ctx for c, ctx in zip(candidates, contexts, strict=True)}
        self._body = _BodyAead(data_key, binding)
        self._chunk_size = chunk_size
        self._finished = False

    def seal(self, plaintext: bytes) -> bytes:
        """Non-final chunks for ``plaintext`` (nothing for empty input)."""
        if self._finished:
            raise EncoderStateError("seal() after seal_final()")
        return _seal_chunks(self._body.seal, plaintext, self._chunk_size)

    def seal_final(self, plaintext: bytes = b"") -> bytes:
        """The final chunk (AAD "final"), after non-final ones if ``plaintext`` needs them."""
        if self._finished:
            raise EncoderStateError("seal_final() called twice")
        self._finished = True
        return _seal_final_chunks(self._body.seal, plaintext, self._chunk_size)

    def response_opener(self, max_chunk: int = DEFAULT_MAX_CHUNK) -> MultiResponseOpener:
        """The decoder of this request's response, whichever candidate answers."""
        return MultiResponseOpener(self._contexts, max_chunk)


class MultiResponseOpener:
    """Client: reads the answering candidate's fingerprint, then opens its chunks.

    ``fingerprint`` is set once known; a response naming a key that is not a candidate
    of this request is refused before anything is opened.
    """

    def __init__(
        self, contexts: dict[str, tuple[RequestHeader, HpkeContext]], max_chunk: int
    ) -> None:
        self._contexts = contexts
        self._max_chunk = max_chunk
        self._pending = bytearray()
        self._inner: ChunkedResponseOpener | None = None
        self.fingerprint: str | None = None

    def push(self, data: bytes) -> list[bytes]:
        if self._inner is None:
            self._pending += data
            if len(self._pending) < 8:
                return []
            fingerprint = bytes(self._pending[:8]).hex()
            found = self._contexts.get(fingerprint)
            if found is None:
                raise UnknownKey(
                    f"the response names key {fingerprint}, which is not a candidate of this "
                    "request: refused"
                )
            header, context = found
            self.fingerprint = fingerprint
            self._inner = ChunkedResponseOpener(
                context,
                header,
                self._max_chunk,
                label=_RESPONSE_LABEL,
            )
            data = bytes(self._pending[8:])
            self._pending.clear()
        return self._inner.push(data)

    def finish(self) -> bytes:
        if self._inner is None:
            raise TruncatedMessage("response ended before it named its enclave")
        return self._inner.finish()


class MultiRequestOpener:
    """Enclave: ``push`` request bytes -> plaintext chunks; ``finish`` -> the final chunk.

    ``lookup(fingerprint)`` returns the (config, private key) of a key this enclave holds.
    Once the header has arrived, ``candidate`` is the entry this enclave answers for and
    ``enc`` its encapsulated key (the replay cache's key).
    """

    def __init__(
        self,
        lookup: Callable[[str], tuple[KeyConfig, EnclaveKey] | None],
        *,
        prefer: str | None = None,
        max_chunk: int = DEFAULT_MAX_CHUNK,
    ) -> None:
        self._lookup = lookup
        self._prefer = prefer
        self._pending = bytearray()
        self._reader = _ChunkReader(max_chunk)
        self._body: _BodyAead | None = None
        self._context: tuple[RequestHeader, HpkeContext] | None = None
        self.header: MultiHeader | None = None
        self.candidate: Candidate | None = None
        self._done = False

    @property
    def enc(self) -> bytes | None:
        return None if self.candidate is None else self.candidate.enc

    def _select(self, header: MultiHeader) -> tuple[Candidate, KeyConfig, EnclaveKey]:
        order = sorted(header.candidates, key=lambda c: c.fingerprint != self._prefer)
        for candidate in order:
            found = self._lookup(candidate.fingerprint)
            if found is not None:
                return candidate, found[0], found[1]
        raise UnknownKey(
            "this enclave holds none of the request's candidate keys: re-verify the fleet "
            "and re-seal"
        )

    def push(self, data: bytes) -> list[bytes]:
        if self._done:
            raise EncoderStateError("push() after finish()")
        if self._body is None:
            self._pending += data
            parsed = MultiHeader.parse(self._pending)
            if parsed is None:
                return []
            header, start = parsed
            candidate, config, key = self._select(header)
            request_header = RequestHeader(
                candidate.key_id,
                candidate.kem_id,
                candidate.kdf_id,
                candidate.aead_id,
                candidate.enc,
            )
            held: dict[int, tuple[KeyConfig, EnclaveKey]] = {config.key_id: (config, key)}
            lookup: KeyLookup = held.get
            _, context = _recipient(request_header, lookup, _REQUEST_LABEL)
            try:
                data_key = context.open(candidate.wrapped_key, header.binding)
            except Exception:  # noqa: BLE001 - pyhpke and our own contexts raise differently
                raise DecryptionFailed(
                    "the wrapped key does not open with this enclave's key and the request's "
                    "candidate list (spliced or tampered)"
                ) from None
            if len(data_key) != DATA_KEY_SIZE:
                raise DecryptionFailed("the wrapped data key has the wrong size")
            self.header, self.candidate = header, candidate
            self._context = (request_header, context)
            self._body = _BodyAead(data_key, header.binding)
            data = bytes(self._pending[start:])
            self._pending.clear()
        out = []
        for sealed in self._reader.push(data):
            plaintext = self._body.open(sealed, b"")
            if not plaintext:
                raise DecryptionFailed("a non-final request chunk is empty")
            out.append(plaintext)
        return out

    def finish(self) -> bytes:
        if self._done:
            raise EncoderStateError("finish() called twice")
        self._done = True
        if self._body is None:
            raise TruncatedMessage("request ended inside its header")
        return self._body.open(self._reader.final_chunk(), _FINAL)

    def response_sealer(self, *, nonce: bytes | None = None) -> tuple[bytes, ChunkedResponseSealer]:
        """``(prefix, sealer)``: send ``prefix`` (this key's fingerprint), then the sealer's
        ``start()`` nonce and chunks."""
        if self._context is None or self.candidate is None:
            raise EncoderStateError("response_sealer() before the request header arrived")
        header, context = self._context
        sealer = ChunkedResponseSealer(context, header, nonce, label=_RESPONSE_LABEL)
        return bytes.fromhex(self.candidate.fingerprint), sealer
