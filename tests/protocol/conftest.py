from __future__ import annotations

from dataclasses import dataclass

import pytest
from sealgate.protocol.public.modes import Mode
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, RequestEncoder
from sealgate.protocol.sealing.hpke import PrivateKey


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


@dataclass
class Exchange:
    """One request/response pair in a mode, encoded and decoded by the real objects."""

    encoder: RequestEncoder
    key: PrivateKey

    def decoder(self, max_frame_size: int = 1 << 20) -> RequestDecoder:
        return RequestDecoder(
            self.encoder.mode, self.encoder.enc, [self.key], max_frame_size=max_frame_size
        )


def new_exchange(key: PrivateKey, mode: Mode, frame_plaintext: int = 64 * 1024) -> Exchange:
    return Exchange(RequestEncoder(key.key_config(), mode, frame_plaintext=frame_plaintext), key)
