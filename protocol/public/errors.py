"""Typed errors for the wire protocol.

Every failure the protocol can detect has its own subclass of :class:`ProtocolError`.
Messages describe what was wrong with the *shape* of the input and what to do about
it; they never contain key material, ciphertext or plaintext. Like h11's
``RemoteProtocolError``, each error carries ``status_hint``: the HTTP status a server
should answer with when the bad input came from its peer.
"""

from __future__ import annotations

__all__ = [
    "ProtocolError",
    "MalformedKeyConfig",
    "UnsupportedSuite",
    "MalformedEncapsulation",
    "UnknownKey",
    "DecryptionFailed",
    "TruncatedMessage",
    "TrailingData",
    "FrameTooLarge",
    "SequenceOverflow",
    "MalformedProblem",
    "MalformedAttestationDocument",
    "InvalidNonceProof",
    "EncoderStateError",
    "MalformedBinaryMessage",
    "BinaryMessageTooLarge",
    "ReplayedRequest",
]


class ProtocolError(Exception):
    """Base class of every error raised by :mod:`sealgate.protocol`."""

    status_hint: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedKeyConfig(ProtocolError):
    """A key configuration (RFC 9458 §3) is truncated, has trailing bytes or bad lengths."""


class UnsupportedSuite(ProtocolError):
    """A key configuration names a KEM, KDF or AEAD this implementation does not speak."""


class MalformedEncapsulation(ProtocolError):
    """An encapsulation header (encapsulated key, response nonce, key id) is missing or bad."""


class UnknownKey(ProtocolError):
    """The request names, or was sealed to, a key the recipient does not hold (any more)."""

    status_hint = 422


class DecryptionFailed(ProtocolError):
    """A frame failed AEAD authentication: tampered, reordered, replayed or for another key."""


class TruncatedMessage(ProtocolError):
    """The message ended inside a frame, or (chunked OHTTP) before its final chunk."""


class TrailingData(ProtocolError):
    """Bytes followed the final chunk of a chunked OHTTP message."""


class FrameTooLarge(ProtocolError):
    """A frame's length prefix exceeds the receiver's maximum; nothing was allocated."""

    status_hint = 413


class SequenceOverflow(ProtocolError):
    """More frames than the nonce space allows; the message must be split across requests."""


class MalformedProblem(ProtocolError):
    """An ``application/problem+json`` body is not a JSON object with a string ``type``."""


class MalformedAttestationDocument(ProtocolError):
    """An attestation document is not valid JSON of the sealgate attestation format."""


class InvalidNonceProof(MalformedAttestationDocument):
    """A nonce-batch inclusion proof is malformed, or does not lead to the root the report binds."""


class MalformedBinaryMessage(ProtocolError):
    """A Binary HTTP message (RFC 9292) is invalid: bad framing, fields, padding or truncation."""


class BinaryMessageTooLarge(MalformedBinaryMessage):
    """A Binary HTTP length exceeds the decoder's limits; nothing was allocated for it."""

    status_hint = 413


class ReplayedRequest(ProtocolError):
    """A sealed request was already accepted once, or was sealed outside the replay window."""

    status_hint = 400


class EncoderStateError(ProtocolError):
    """An encoder or decoder was used after ``finish()`` or after it failed (a caller bug)."""

    status_hint = 500
