"""The :class:`Verification` record: every step of an attestation check, passed or failed.

The record and the :class:`~sealgate.client.errors.VerificationError` that carries it
are defined together in :mod:`sealgate.client.errors` (each names the other); this is
the name they are imported by.
"""

from __future__ import annotations

from .errors import Step, Verification

__all__ = ["Step", "Verification"]
