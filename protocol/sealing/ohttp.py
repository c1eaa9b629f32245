"""Oblivious HTTP encapsulation (RFC 9458 §4) and its chunked variant (draft-ietf-ohai-chunked-ohttp-08).

One-shot (``message/ohttp-req`` / ``-res``)::

    hdr      = key_id (1) | kem_id (2) | kdf_id (2) | aead_id (2)
    info     = "message/bhttp request" | 0x00 | hdr
    enc, ctx = SetupBaseS(pkR, info)
    request  = hdr | enc | ctx.Seal("", bhttp_request)
    secret   = ctx.Export("message/bhttp response", max(Nn, Nk))
    prk      = Extract(enc | response_nonce, secret)
    response = response_nonce | Seal(Expand(prk, "key", Nk), Expand(prk, "nonce", Nn), "", bhttp)

Chunked (``message/ohttp-chunked-req`` / ``-res``): the same header with the labels
"message/bhttp chunked request" / "... chunked response"; then chunks, each a QUIC
varint length and a sealed chunk, and a final chunk introduced by length 0 that runs
to the end of the message and is sealed with AAD "final". Request chunks use the
HPKE context's own sequence; response chunk ``i`` uses nonce ``aead_nonce XOR i``. A
message that ends without an authenticated final chunk is truncated, and a non-final
chunk that opens to nothing is an error (draft-08 §6).

Sans-IO and symmetric: the client's :class:`ChunkedRequestSealer` and
:class:`ChunkedResponseOpener` mirror the enclave's :class:`ChunkedRequestOpener` and
:class:`ChunkedResponseSealer`; :class:`OneShotRequest` / :class:`OneShotServer` do the
same for RFC 9458 proper. HPKE is pyhpke for DHKEM(X25519); the post-quantum hybrid
MLKEM768-X25519 (the native mode's default) is :mod:`.xwing` under the RFC 9180 key
schedule of :mod:`.keyschedule`. HKDF and the AEADs are ``cryptography``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from pyhpke import (
    AEADId,
    CipherSuite,
    ContextInterface,
    KDFId,
    KEMId,
    KEMKeyInterface,
    KEMKeyPair,
    PyHPKEError,
)

from ..public.errors import (
    DecryptionFailed,
    EncoderStateError,
    FrameTooLarge,
    MalformedEncapsulation,
    MalformedKeyConfig,
    SequenceOverflow,
    TruncatedMessage,
    UnknownKey,
    UnsupportedSuite,
)
from ..public.keyconfig import KeyConfig
from ..public.suites import (
    KEM_ENC_SIZES,
    KEM_MLKEM768_X25519,
    KEM_X25519_HKDF_SHA256,
    SymmetricSuite,
)
from ..public.varint import decode_varint, encode_varint
from .hpke import EnclaveKey, PrivateKey
from .keyschedule import Context, key_schedule
from .xwing import HybridPrivateKey, encapsulate

__all__ = [
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "CHUNKED_REQUEST_MEDIA_TYPE",
    "CHUNKED_RESPONSE_MEDIA_TYPE",
    "RequestHeader",
    "KeyLookup",
    "OneShotRequest",
    "OneShotServer",
    "ChunkedRequestSealer",
    "ChunkedRequestOpener",
    "ChunkedResponseSealer",
    "ChunkedResponseOpener",
    "DEFAULT_MAX_CHUNK",
    "SEND_CHUNK",
]

REQUEST_MEDIA_TYPE = "message/ohttp-req"
RESPONSE_MEDIA_TYPE = "message/ohttp-res"
CHUNKED_REQUEST_MEDIA_TYPE = "message/ohttp-chunked-req"
CHUNKED_RESPONSE_MEDIA_TYPE = "message/ohttp-chunked-res"

_REQUEST_LABEL = b"message/bhttp request"
_RESPONSE_LABEL = b"message/bhttp response"
_CHUNKED_REQUEST_LABEL = b"message/bhttp chunked request"
_CHUNKED_RESPONSE_LABEL = b"message/bhttp chunked response"
_FINAL = b"final"

#: Receivers refuse a chunk whose ciphertext exceeds this (draft-08 requires 16 KiB).
DEFAULT_MAX_CHUNK = 64 * 1024 + 16
#: Senders split plaintext into chunks of at most this many bytes (draft-08 §3).
SEND_CHUNK = 16 * 1024

_HEADER = struct.Struct(">BHHH")
_U16 = struct.Struct(">H")
_TAG_SIZE = 16  # every AEAD here (AES-GCM, ChaCha20-Poly1305) has a 16-byte tag

# RFC 9180 §7.3: (Nk, Nn) per AEAD; §7.2: hash per KDF.
_AEADS: dict[int, tuple[int, int, type[AESGCM] | type[ChaCha20Poly1305]]] = {
    0x0001: (16, 12, AESGCM),
    0x0002: (32, 12, AESGCM),
    0x0003: (32, 12, ChaCha20Poly1305),
}
_KDFS: dict[int, Callable[[], hashes.HashAlgorithm]] = {
    0x0001: hashes.SHA256,
    0x0002: hashes.SHA384,
    0x0003: hashes.SHA512,
}
_HASHLIB = {0x0001: hashlib.sha256, 0x0002: hashlib.sha384, 0x0003: hashlib.sha512}
_HASH_SIZES = {0x0001: 32, 0x0002: 48, 0x0003: 64}
#: DHKEM(X25519, HKDF-SHA256) through pyhpke; MLKEM768-X25519 through :mod:`.keyschedule`.
_KEMS = {KEM_X25519_HKDF_SHA256, KEM_MLKEM768_X25519}


@functools.lru_cache(maxsize=32)
def _cipher_suite(kem_id: int, kdf_id: int, aead_id: int) -> CipherSuite:
    if kem_id != KEM_X25519_HKDF_SHA256 or kdf_id not in _KDFS or aead_id not in _AEADS:
        raise UnsupportedSuite(
            f"no OHTTP support for KEM 0x{kem_id:04x}, KDF 0x{kdf_id:04x}, AEAD 0x{aead_id:04x}"
        )
    return CipherSuite.new(KEMId(kem_id), KDFId(kdf_id), AEADId(aead_id))


@functools.lru_cache(maxsize=64)
def _public_key(kem_id: int, kdf_id: int, aead_id: int, raw: bytes) -> KEMKeyInterface:
    """The recipient's deserialized public key, cached: a client seals to few keys."""
    try:
        return _cipher_suite(kem_id, kdf_id, aead_id).kem.deserialize_public_key(raw)
    except (ValueError, PyHPKEError) as exc:
        raise MalformedEncapsulation("the key config's public key is not a valid point") from exc


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The cleartext start of an encapsulated request: key id, algorithms and ``enc``."""

    key_id: int
    kem_id: int
    kdf_id: int
    aead_id: int
    enc: bytes

    @property
    def hdr(self) -> bytes:
        """The 7 bytes that go into ``info`` (RFC 9458 §4.3)."""
        return _HEADER.pack(self.key_id, self.kem_id, self.kdf_id, self.aead_id)

    def to_bytes(self) -> bytes:
        return self.hdr + self.enc

    @classmethod
    def parse(cls, data: bytes | bytearray) -> tuple[RequestHeader, int] | None:
        """``(header, size)`` from the start of ``data``; None if more bytes are needed."""
        if len(data) < _HEADER.size:
            return None
        key_id, kem_id, kdf_id, aead_id = _HEADER.unpack_from(data)
        enc_size = KEM_ENC_SIZES.get(kem_id)
        if enc_size is None or kem_id not in _KEMS:
            raise UnsupportedSuite(f"encapsulated request uses unsupported KEM 0x{kem_id:04x}")
        end = _HEADER.size + enc_size
        if len(data) < end:
            return None
        return cls(key_id, kem_id, kdf_id, aead_id, bytes(data[_HEADER.size : end])), end

    @property
    def suite(self) -> SymmetricSuite:
        return SymmetricSuite(self.kdf_id, self.aead_id)


#: Maps a request's key id to the recipient's config and private key, or None.
KeyLookup = Callable[[int], "tuple[KeyConfig, EnclaveKey] | None"]

#: What both HPKE implementations' contexts offer: ``seal``, ``open`` and ``export``.
HpkeContext = ContextInterface | Context


def _choose_suite(config: KeyConfig, suite: SymmetricSuite | None) -> SymmetricSuite:
    if suite is not None:
        if suite not in config.suites:
            raise UnsupportedSuite(f"key {config.key_id} does not offer {suite}")
        return suite
    for offered in config.suites:
        if offered.kdf_id in _KDFS and offered.aead_id in _AEADS:
            return offered
    raise UnsupportedSuite(f"key {config.key_id} offers no symmetric suite this client speaks")


def _sender(
    config: KeyConfig, label: bytes, suite: SymmetricSuite | None, ephemeral: PrivateKey | None
) -> tuple[RequestHeader, HpkeContext]:
    chosen = _choose_suite(config, suite)
    hdr = _HEADER.pack(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id)
    if config.kem_id == KEM_MLKEM768_X25519:
        if ephemeral is not None:
            raise ValueError("deterministic encapsulation exists only for X25519 test vectors")
        try:
            shared_secret, enc = encapsulate(config.public_key)
        except MalformedKeyConfig as exc:
            raise MalformedEncapsulation(f"cannot encapsulate to this key config: {exc}") from exc
        hybrid, *_ = key_schedule(
            config.kem_id, chosen.kdf_id, chosen.aead_id, shared_secret, label + b"\x00" + hdr
        )
        header = RequestHeader(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id, enc)
        return header, hybrid
    cipher = _cipher_suite(config.kem_id, chosen.kdf_id, chosen.aead_id)
    pkr = _public_key(config.kem_id, chosen.kdf_id, chosen.aead_id, config.public_key)
    eks = None
    if ephemeral is not None:  # deterministic encapsulation, for published test vectors only
        eks = KEMKeyPair(ephemeral.kem_key, cipher.kem.deserialize_public_key(ephemeral.public_key))
    enc, context = cipher.create_sender_context(pkr, label + b"\x00" + hdr, eks=eks)
    return RequestHeader(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id, enc), context


def _recipient(
    header: RequestHeader, keys: KeyLookup, label: bytes
) -> tuple[KeyConfig, HpkeContext]:
    found = keys(header.key_id)
    if found is None:
        raise UnknownKey(
            f"no key with id {header.key_id}: fetch the current key configuration and re-seal"
        )
    config, private_key = found
    if config.kem_id != header.kem_id or header.suite not in config.suites:
        raise UnknownKey(
            f"key {header.key_id} is not offered with these algorithms: fetch the current key "
            "configuration and re-seal"
        )
    info = label + b"\x00" + header.hdr
    if isinstance(private_key, HybridPrivateKey):
        # A wrong length is MalformedEncapsulation here; an altered ML-KEM or X25519 half
        # yields another secret, so the first open fails with DecryptionFailed.
        shared_secret = private_key.decapsulate(header.enc)
        hybrid, *_ = key_schedule(header.kem_id, header.kdf_id, header.aead_id, shared_secret, info)
        return config, hybrid
    cipher = _cipher_suite(header.kem_id, header.kdf_id, header.aead_id)
    try:
        context = cipher.create_recipient_context(header.enc, private_key.kem_key, info)
    except (ValueError, PyHPKEError):
        raise DecryptionFailed("the encapsulated key is not valid for this key") from None
    return config, context


def _hkdf_expand(kdf_id: int, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3 HKDF-Expand; one HMAC when ``length`` fits in one hash output."""
    if length <= _HASH_SIZES[kdf_id]:  # T(1) = HMAC(PRK, info | 0x01)
        return hmac.digest(prk, info + b"\x01", _HASHLIB[kdf_id])[:length]
    return HKDFExpand(_KDFS[kdf_id](), length, info).derive(prk)


class _ResponseAead:
    """The response key of RFC 9458 §4.4, with the chunk counter of draft-08 §6.2."""

    __slots__ = ("_aead", "_base", "_limit", "_nn")

    def __init__(self, context: HpkeContext, header: RequestHeader, label: bytes, nonce: bytes):
        nk, nn, aead = _AEADS[header.aead_id]
        secret = context.export(label, max(nn, nk))
        digest = _HASHLIB[header.kdf_id]
        prk = hmac.digest(header.enc + nonce, secret, digest)
        key = _hkdf_expand(header.kdf_id, prk, b"key", nk)
        self._base = int.from_bytes(_hkdf_expand(header.kdf_id, prk, b"nonce", nn))
        self._nn = nn
        self._limit = 1 << (8 * nn)
        self._aead = aead(key)

    @staticmethod
    def nonce_size(aead_id: int) -> int:
        nk, nn, _ = _AEADS[aead_id]
        return max(nk, nn)

    def seal(self, counter: int, plaintext: bytes, aad: bytes) -> bytes:
        if counter >= self._limit:
            raise SequenceOverflow("response chunk counter exhausted")
        return self._aead.encrypt((self._base ^ counter).to_bytes(self._nn), plaintext, aad)

    def open(self, counter: int, ciphertext: bytes, aad: bytes) -> bytes:
        if counter >= self._limit:
            raise SequenceOverflow("response chunk counter exhausted")
        try:
            return self._aead.decrypt((self._base ^ counter).to_bytes(self._nn), ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"response chunk {counter} failed authentication "
                "(tampered, reordered, truncated or not the response to this request)"
            ) from None

    def __repr__(self) -> str:
        return "_ResponseAead(<redacted>)"


def _open_hpke(context: HpkeContext, ciphertext: bytes, aad: bytes, what: str) -> bytes:
    try:
        return context.open(ciphertext, aad)
    except (PyHPKEError, DecryptionFailed):
        raise DecryptionFailed(
            f"{what} failed authentication (tampered, reordered, or sealed to another key)"
        ) from None


# -- RFC 9458 one-shot ---------------------------------------------------------------------


class OneShotRequest:
    """Client side of RFC 9458: seal one BHTTP request, open its one response."""

    def __init__(
        self,
        config: KeyConfig,
        request: bytes,
        *,
        suite: SymmetricSuite | None = None,
        ephemeral: PrivateKey | None = None,
    ) -> None:
        self.header, self._context = _sender(config, _REQUEST_LABEL, suite, ephemeral)
        self.encapsulated = self.header.to_bytes() + self._context.seal(request, b"")

    def open_response(self, data: bytes) -> bytes:
        """The BHTTP response inside an encapsulated response."""
        size = _ResponseAead.nonce_size(self.header.aead_id)
        if len(data) < size + 16:
            raise TruncatedMessage("encapsulated response is shorter than its nonce and tag")
        key = _ResponseAead(self._context, self.header, _RESPONSE_LABEL, bytes(data[:size]))
        return key.open(0, bytes(data[size:]), b"")


class OneShotServer:
    """Gateway side of RFC 9458: open one request, seal its one response."""

    def __init__(self, data: bytes, keys: KeyLookup) -> None:
        parsed = RequestHeader.parse(data)
        if parsed is None:
            raise MalformedEncapsulation("encapsulated request is shorter than its header")
        self.header, start = parsed
        self.key_config, self._context = _recipient(self.header, keys, _REQUEST_LABEL)
        self.request = _open_hpke(self._context, bytes(data[start:]), b"", "encapsulated request")

    def seal_response(self, response: bytes, *, nonce: bytes | None = None) -> bytes:
        """Encapsulate ``response``; ``nonce`` is random unless a test vector supplies it."""
        size = _ResponseAead.nonce_size(self.header.aead_id)
        nonce = os.urandom(size) if nonce is None else nonce
        if len(nonce) != size:
            raise ValueError(f"response nonce must be {size} bytes")
        key = _ResponseAead(self._context, self.header, _RESPONSE_LABEL, nonce)
        return nonce + key.seal(0, response, b"")


# -- chunked --------------------------------------------------------------------------------


class _ChunkReader:
    """Splits ``varint length | chunk`` records; length 0 starts the final chunk."""

    def __init__(self, max_chunk: int) -> None:
        self.buffer = bytearray()
        self.final = False
        self._max = max_chunk

    def push(self, data: bytes) -> list[bytes]:
        if not self.buffer and not self.final and data and data[0] < 0x40:
            # Fast path: exactly one whole non-final chunk with a 1-byte length
            # (a streamed event); anything else takes the general loop below.
            length = data[0]
            if length and len(data) == length + 1 and length <= self._max:
                return [bytes(data[1:])]
        elif not self.buffer and not self.final and len(data) > 2 and 0x40 <= data[0] < 0x80:
            length = ((data[0] & 0x3F) << 8) | data[1]
            if len(data) == length + 2 and length <= self._max:
                return [bytes(data[2:])]
        self.buffer += data
        chunks: list[bytes] = []
        while not self.final:
            decoded = decode_varint(self.buffer)
            if decoded is None:
                break
            length, start = decoded
            if length == 0:
                del self.buffer[:start]
                self.final = True
                break
            if length > self._max:
                raise FrameTooLarge(f"chunk of {length} bytes exceeds the limit of {self._max}")
            if len(self.buffer) < start + length:
                break
            chunks.append(bytes(self.buffer[start : start + length]))
            del self.buffer[: start + length]
        if self.final and len(self.buffer) > self._max:
            raise FrameTooLarge(f"final chunk exceeds the limit of {self._max} bytes")
        return chunks

    def final_chunk(self) -> bytes:
        if not self.final:
            raise TruncatedMessage(
                "chunked message ended without its final chunk (truncated in transit)"
            )
        return bytes(self.buffer)


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _seal_chunks(seal_one: Callable[[bytes, bytes], bytes], plaintext: bytes, size: int) -> bytes:
    """Non-final chunks: ``varint(len) || seal_one(piece, "")`` per piece of at most ``size``."""
    out = []
    for piece in _split(plaintext, size):
        sealed = seal_one(piece, b"")
        out.append(encode_varint(len(sealed)) + sealed)
    return b"".join(out)


def _seal_final_chunks(
    seal_one: Callable[[bytes, bytes], bytes], plaintext: bytes, size: int
) -> bytes:
    """Leading non-final chunks, then the final chunk (length 0, AAD "final") of at most ``size``."""
    cut = max(len(plaintext) - size, 0)
    return (
        _seal_chunks(seal_one, plaintext[:cut], size) + b"\x00" + seal_one(plaintext[cut:], _FINAL)
    )


class ChunkedRequestSealer:
    """Client: ``header`` first, then ``seal`` for each piece, then ``seal_final``."""

    def __init__(
        self,
        config: KeyConfig,
        *,
        suite: SymmetricSuite | None = None,
        ephemeral: PrivateKey | None = None,
        chunk_size: int = SEND_CHUNK,
    ) -> None:
        self.request_header, self._context = _sender(
            config, _CHUNKED_REQUEST_LABEL, suite, ephemeral
        )
        self.header = self.request_header.to_bytes()
        self._chunk_size = chunk_size
        self._finished = False
        self.chunks_sealed = 0

    def _seal_one(self, piece: bytes, aad: bytes) -> bytes:
        self.chunks_sealed += 1
        return self._context.seal(piece, aad)

    def seal(self, plaintext: bytes) -> bytes:
        """Non-final chunks for ``plaintext`` (nothing for empty input: empty chunks are invalid)."""
        if self._finished:
            raise EncoderStateError("seal() after seal_final(): the request is complete")
        return _seal_chunks(self._seal_one, plaintext, self._chunk_size)

    def seal_final(self, plaintext: bytes = b"") -> bytes:
        """The final chunk (AAD "final"), after non-final ones if ``plaintext`` needs them."""
        if self._finished:
            raise EncoderStateError("seal_final() called twice")
        self._finished = True
        return _seal_final_chunks(self._seal_one, plaintext, self._chunk_size)

    def response_opener(self, max_chunk: int = DEFAULT_MAX_CHUNK) -> ChunkedResponseOpener:
        """The decoder of this request's response."""
        return ChunkedResponseOpener(self._context, self.request_header, max_chunk)


class ChunkedResponseOpener:
    """Client: ``push`` response bytes -> plaintext chunks; ``finish`` -> the final chunk."""

    def __init__(
        self,
        context: HpkeContext,
        header: RequestHeader,
        max_chunk: int,
        *,
        label: bytes = _CHUNKED_RESPONSE_LABEL,
    ) -> None:
        self._context = context
        self._label = label
        self._header = header
        self._nonce_size = _ResponseAead.nonce_size(header.aead_id)
        self._key: _ResponseAead | None = None
        self._pending = bytearray()
        self._reader = _ChunkReader(max_chunk)
        self._counter = 0
        self._done = False

    def push(self, data: bytes) -> list[bytes]:
        if self._done:
            raise EncoderStateError("push() after finish()")
        if self._key is None:
            self._pending += data
            if len(self._pending) < self._nonce_size:
                return []
            nonce = bytes(self._pending[: self._nonce_size])
            self._key = _ResponseAead(self._context, self._header, self._label, nonce)
            data = bytes(self._pending[self._nonce_size :])
            self._pending.clear()
        key = self._key
        out = []
        for sealed in self._reader.push(data):
            plaintext = key.open(self._counter, sealed, b"")
            self._counter += 1
            if not plaintext:
                raise DecryptionFailed("a non-final response chunk is empty (draft-08 §6)")
            out.append(plaintext)
        return out

    def finish(self) -> bytes:
        """The final chunk's plaintext; raises :class:`TruncatedMessage` if it never came."""
        if self._done:
            raise EncoderStateError("finish() called twice")
        self._done = True
        if self._key is None:
            raise TruncatedMessage("response ended before its nonce")
        return self._key.open(self._counter, self._reader.final_chunk(), _FINAL)


class ChunkedRequestOpener:
    """Enclave: ``push`` request bytes -> plaintext chunks; ``finish`` -> the final chunk.

    ``header`` and ``key_config`` are set once the header has arrived (check
    ``header is not None`` after a push), so the caller can check replay and route
    before any chunk is opened.
    """

    def __init__(self, keys: KeyLookup, max_chunk: int = DEFAULT_MAX_CHUNK) -> None:
        self._keys = keys
        self._pending = bytearray()
        self._reader = _ChunkReader(max_chunk)
        self._context: HpkeContext | None = None
        self.header: RequestHeader | None = None
        self.key_config: KeyConfig | None = None
        self._done = False

    def push(self, data: bytes) -> list[bytes]:
        if self._done:
            raise EncoderStateError("push() after finish()")
        if self._context is None:
            self._pending += data
            parsed = RequestHeader.parse(self._pending)
            if parsed is None:
                return []
            self.header, start = parsed
            self.key_config, self._context = _recipient(
                self.header, self._keys, _CHUNKED_REQUEST_LABEL
            )
            data = bytes(self._pending[start:])
            self._pending.clear()
        out = []
        for sealed in self._reader.push(data):
            plaintext = _open_hpke(self._context, sealed, b"", "request chunk")
            if not plaintext:
                raise DecryptionFailed("a non-final request chunk is empty (draft-08 §6)")
            out.append(plaintext)
        return out

    def finish(self) -> bytes:
        """The final chunk's plaintext; raises :class:`TruncatedMessage` if it never came."""
        if self._done:
            raise EncoderStateError("finish() called twice")
        self._done = True
        if self._context is None:
            raise TruncatedMessage("request ended inside its header")
        return _open_hpke(self._context, self._reader.final_chunk(), _FINAL, "final request chunk")

    def response_sealer(self, *, nonce: bytes | None = None) -> ChunkedResponseSealer:
        """The encoder of this request's response (after the header has been read)."""
        if self._context is None or self.header is None:
            raise EncoderStateError("response_sealer() before the request header arrived")
        return ChunkedResponseSealer(self._context, self.header, nonce)


class ChunkedResponseSealer:
    """Enclave: ``start`` (the nonce) first, then ``seal`` per piece, then ``seal_final``."""

    def __init__(
        self,
        context: HpkeContext,
        header: RequestHeader,
        nonce: bytes | None = None,
        chunk_size: int = SEND_CHUNK,
        *,
        label: bytes = _CHUNKED_RESPONSE_LABEL,
    ) -> None:
        size = _ResponseAead.nonce_size(header.aead_id)
        self.nonce = os.urandom(size) if nonce is None else nonce
        if len(self.nonce) != size:
            raise ValueError(f"response nonce must be {size} bytes")
        self._key = _ResponseAead(context, header, label, self.nonce)
        self._counter = 0
        self._chunk_size = chunk_size
        self._state = "start"

    def start(self) -> bytes:
        """The response nonce, which must precede every chunk."""
        if self._state != "start":
            raise EncoderStateError("start() called twice")
        self._state = "chunks"
        return self.nonce

    def seal(self, plaintext: bytes) -> bytes:
        """Non-final chunks for ``plaintext`` (nothing for empty input)."""
        if self._state != "chunks":
            raise EncoderStateError(f"seal() in state {self._state}")
        size = len(plaintext)
        if 0 < size <= self._chunk_size:  # one streamed event: one chunk, sealed inline
            key, counter = self._key, self._counter
            if counter >= key._limit:
                raise SequenceOverflow("response chunk counter exhausted")
            nonce = (key._base ^ counter).to_bytes(key._nn)
            sealed = key._aead.encrypt(nonce, plaintext, b"")
            self._counter = counter + 1
            size += _TAG_SIZE
            if size < 0x40:  # RFC 9000 §16: 1- and 2-byte varints, written inline
                return bytes((size,)) + sealed
            if size < 0x4000:
                return _U16.pack(size | 0x4000) + sealed
            return encode_varint(size) + sealed
        out = []
        for piece in _split(plaintext, self._chunk_size):
            sealed = self._key.seal(self._counter, piece, b"")
            self._counter += 1
            out.append(encode_varint(len(sealed)) + sealed)
        return b"".join(out)

    def seal_final(self, plaintext: bytes = b"") -> bytes:
        """The final chunk (AAD "final")."""
        head = b""
        if len(plaintext) > self._chunk_size:
            head, plaintext = (
                self.seal(plaintext[: -self._chunk_size]),
                plaintext[-self._chunk_size :],
            )
        if self._state != "chunks":
            raise EncoderStateError(f"seal_final() in state {self._state}")
        self._state = "done"
        return head + b"\x00" + self._key.seal(self._counter, plaintext, _FINAL)
