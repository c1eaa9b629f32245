"""Shared state machines of EHBP's body encoders and decoders.

An encoder turns plaintext pushes into frames as they come (so an SSE event is
sealed and sent the moment it exists); ``finish()`` closes the message. A decoder is
the mirror image and refuses a frame that does not authenticate or is out of place,
and a message that ends inside a frame. EHBP has no end-of-message marker: a body
cut at a frame boundary cannot be told from a complete one (the native mode's
chunked OHTTP can).
"""

from __future__ import annotations

from ..public.errors import DecryptionFailed, EncoderStateError, ProtocolError
from ..public.framing import DEFAULT_MAX_FRAME_SIZE, FrameReader, frame
from ..public.modes import Mode
from ..public.suites import AEAD_TAG_SIZE

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

    def _seal(self, plaintext: bytes) -> bytes:
        raise NotImplementedError

    def _seal_framed(self, plaintext: bytes) -> bytes:
        ciphertext = self._seal(plaintext)
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
            return self._seal_framed(bytes(data))
        view = memoryview(data)
        return b"".join(
            self._seal_framed(bytes(view[i : i + step])) for i in range(0, len(view), step)
        )

    def finish(self, data: bytes = b"") -> bytes:
        """Seal the rest of the message and close it (EHBP sends no end marker)."""
        if self._finished:
            raise EncoderStateError("finish() called twice")
        out = self.push(data)
        self._finished = True
        return out


class FrameDecoder:
    """Base of the request and response decoders; subclasses provide ``_open``."""

    mode: Mode

    def __init__(self, mode: Mode, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.mode = mode
        self._reader = FrameReader(max_frame_size)
        self._failed = False
        self.frames_opened = 0

    def _open(self, ciphertext: bytes) -> bytes:
        raise NotImplementedError

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
        out: list[bytes] = []
        for ciphertext in self._reader.push(data):
            if not ciphertext:
                continue  # EHBP §4.3: zero-length frames are skipped
            if len(ciphertext) < AEAD_TAG_SIZE:
                raise DecryptionFailed("frame is shorter than an authentication tag")
            out.append(self._open_frame(ciphertext))
        return out

    def _open_frame(self, ciphertext: bytes) -> bytes:
        plaintext = self._open(ciphertext)
        self.frames_opened += 1
        return plaintext

    def finish(self) -> None:
        """Declare end of input: raise if the message ends inside a frame."""
        if self._failed:
            raise EncoderStateError("decoder already failed; discard the message")
        self._failed = True  # no further use either way
        self._reader.finish()
