"""sealgate.gateway: the untrusted front door that routes ciphertext across a fleet of enclaves.

It discovers enclaves, polls their health and public keys, publishes their
attestation documents for clients to verify, and forwards sealed requests by key
fingerprint. It imports nothing that can open a sealed message or hold a private
key (``tests/gateway/test_blindness.py`` checks the import graph).
"""

from __future__ import annotations

from .config import GatewayConfig
from .discovery import Discovery
from .fleet import Fleet, Member
from .server import Gateway

__all__ = ["Discovery", "Fleet", "Gateway", "GatewayConfig", "Member"]
