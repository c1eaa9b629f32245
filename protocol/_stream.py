"""Shared state machines of the four body encoders and decoders.

An encoder turns plaintext pushes into frames as they come (so an SSE event is
sealed and sent the moment it exists); ``finish()`` closes the message, in
sealgate mode with a final frame sealed under AAD ``"final"``. A decoder is the
mirror image and refuses a message that ends before its final frame, has bytes
after it, or has a frame out of place.
"""

from __future__ import annotations

from .errors import (
    DecryptionFailed,
    EncoderStateError,
    ProtocolError,
    TrailingData,
    TruncatedMessage,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameReader, frame
from .modes import FINAL_AAD, Mode
from .suites import AEAD_TAG_SIZE

DEFAULT_FRAME_PLAINTEXT = 64 * 1024


class FrameEncoder:
    """Base of the request and response encoders; subclasses provide ``_seal``."""

    mode: Mode

    def __init__(self, mode: Mode, frame_plaintext: int = DEFAULT_FRAME_PLAINTEXT) -> None:
        if frame_plaintext <= 0:
            raise ValueError("frame_plaintext must be positive")
        self.mode = mode
        self._frame_plaintext = frame_plaintext
        self._finished = False
        self.frames_sealed = 0

    def _seal(self, plaintext: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    def _seal_framed(self, plaintext: bytes, aad: bytes) -> bytes:
        ciphertext = self._seal(plaintext, aad)
        self.frames_sealed += 1
        return frame(ciphertext)

    def push(self, data: bytes) -> bytes:
        """Seal ``data`` now, as one frame or several of at most ``frame_plaintext`` bytes."""
        if self._finished:
            raise EncoderStateError("push() after finish(): the message is already closed")
        if not data:
            return b""
        step = self._frame_plaintext
        if len(data) <= step:  # the common case: one event, one frame
            return self._seal_framed(bytes(data), b"")
        view = memoryview(data)
        return b"".join(
            self._seal_framed(bytes(view[i : i + step]), b"") for i in range(0, len(view), step)
        )

    def finish(self, data: bytes = b"") -> bytes:
        """Seal the rest of the message; in sealgate mode its last frame carries the end marker."""
        if self._finished:
            raise EncoderStateError("finish() called twice")
        if not self.mode.end_marker:
            out = self.push(data)
            self._finished = True
            return out
        step = self._frame_plaintext
        head, tail = (data[:-step], data[-step:]) if len(data) > step else (b"", data)
        out = self.push(head) + self._seal_framed(bytes(tail), FINAL_AAD)
        self._finished = True
        return out


class FrameDecoder:
    """Base of the request and response decoders; subclasses provide ``_open``."""

    mode: Mode

    def __init__(self, mode: Mode, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.mode = mode
        self._reader = FrameReader(max_frame_size)
        self._complete = False  # final frame seen (sealgate mode)
        self._failed = False
        self.frames_opened = 0

    def _open(self, ciphertext: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        """True once the final frame was opened (sealgate mode only)."""
        return self._complete

    def push(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the plaintext of every frame they complete."""
        if self._failed:
            raise EncoderStateError("decoder already failed; discard the message")
        try:
            return self._push(data)
        except ProtocolError:
            self._failed = True
            raise

    def _push(self, data: bytes) -> list[bytes]:
        if self._complete:
            if data:
                raise TrailingData("bytes follow the final frame of the message")
            return []
        out: list[bytes] = []
        for ciphertext in self._reader.push(data):
            if self._complete:
                raise TrailingData("a frame follows the final frame of the message")
            if not ciphertext and not self.mode.end_marker:
                continue  # EHBP §4.3: zero-length frames are skipped
            if len(ciphertext) < AEAD_TAG_SIZE:
                raise DecryptionFailed("frame is shorter than an authentication tag")
            out.append(self._open_frame(ciphertext))
        if self._complete and self._reader.buffered:
            raise TrailingData("bytes follow the final frame of the message")
        return out

    def _open_frame(self, ciphertext: bytes) -> bytes:
        if not self.mode.end_marker:
            plaintext = self._open(ciphertext, b"")
        else:
            # The end marker is in the AAD, so which of the two was used is only known by
            # trying: a frame opens under exactly one of them (or neither, if tampered).
            try:
                plaintext = self._open(ciphertext, b"")
            except DecryptionFailed:
                plaintext = self._open(ciphertext, FINAL_AAD)
                self._complete = True
        self.frames_opened += 1
        return plaintext

    def finish(self) -> None:
        """Declare end of input: raise if the message is truncated."""
        if self._failed:
            raise EncoderStateError("decoder already failed; discard the message")
        self._failed = True  # no further use either way
        self._reader.finish()
        if self.mode.end_marker and not self._complete:
            raise TruncatedMessage("message ended before its final frame (truncated in transit)")
