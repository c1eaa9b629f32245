"""sealgate.enclave: runs inside the confidential VM; the only place plaintext exists.

Generates HPKE keys in memory, binds them into hardware (or software) attestation,
decrypts request bodies, forwards them to the inference engine and encrypts the
responses back, streamed frame by frame. Built on Starlette and uvicorn.
"""

from __future__ import annotations

from .app import Enclave, create_app
from .config import EnclaveConfig
from .keyring import KeyRing

__all__ = ["Enclave", "EnclaveConfig", "KeyRing", "create_app"]
