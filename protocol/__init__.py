"""sealgate's wire protocol, sans-IO: key configurations, body encapsulation, binding, problems.

Everything here takes bytes and returns bytes or values; nothing opens a socket or
touches an event loop, so the enclave, the gateway, the client and the tests all
drive the same code.

Names are re-exported lazily (PEP 562): importing ``sealgate.protocol.keyconfig``
does not load the HPKE machinery, which lets the untrusted gateway use the public
parts (key configs, problems, header names) without importing anything that can
open a sealed message. ``tests/gateway/test_blindness.py`` enforces that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attestation import AttestationDocument, parse_time_nonce, time_nonce
    from .binding import report_data
    from .errors import (
        DecryptionFailed,
        EncoderStateError,
        FrameTooLarge,
        InvalidNonceProof,
        MalformedAttestationDocument,
        MalformedEncapsulation,
        MalformedKeyConfig,
        MalformedProblem,
        ProtocolError,
        SequenceOverflow,
        TrailingData,
        TruncatedMessage,
        UnknownKey,
        UnsupportedSuite,
    )
    from .framing import FrameReader, frame
    from .hpke import PrivateKey
    from .keyconfig import KeyConfig, decode_key_configs, encode_key_configs, fingerprint_of
    from .modes import EHBP, Mode, mode_of_headers
    from .nonce_batch import NonceBatch, NonceProof
    from .problem import PROBLEMS, Problem, ProblemType
    from .request import RequestDecoder, RequestEncoder, parse_hex_header
    from .response import ResponseDecoder, ResponseEncoder

_EXPORTS: dict[str, str] = {
    "AttestationDocument": "attestation",
    "parse_time_nonce": "attestation",
    "time_nonce": "attestation",
    "report_data": "binding",
    "DecryptionFailed": "errors",
    "EncoderStateError": "errors",
    "FrameTooLarge": "errors",
    "InvalidNonceProof": "errors",
    "MalformedAttestationDocument": "errors",
    "MalformedEncapsulation": "errors",
    "MalformedKeyConfig": "errors",
    "MalformedProblem": "errors",
    "ProtocolError": "errors",
    "SequenceOverflow": "errors",
    "TrailingData": "errors",
    "TruncatedMessage": "errors",
    "UnknownKey": "errors",
    "UnsupportedSuite": "errors",
    "FrameReader": "framing",
    "frame": "framing",
    "PrivateKey": "hpke",
    "KeyConfig": "keyconfig",
    "decode_key_configs": "keyconfig",
    "encode_key_configs": "keyconfig",
    "fingerprint_of": "keyconfig",
    "EHBP": "modes",
    "Mode": "modes",
    "mode_of_headers": "modes",
    "NonceBatch": "nonce_batch",
    "NonceProof": "nonce_batch",
    "PROBLEMS": "problem",
    "Problem": "problem",
    "ProblemType": "problem",
    "RequestDecoder": "request",
    "RequestEncoder": "request",
    "parse_hex_header": "request",
    "ResponseDecoder": "response",
    "ResponseEncoder": "response",
}

__all__ = [
    "AttestationDocument",
    "DecryptionFailed",
    "EHBP",
    "EncoderStateError",
    "FrameReader",
    "FrameTooLarge",
    "InvalidNonceProof",
    "KeyConfig",
    "MalformedAttestationDocument",
    "MalformedEncapsulation",
    "MalformedKeyConfig",
    "MalformedProblem",
    "Mode",
    "NonceBatch",
    "NonceProof",
    "PROBLEMS",
    "PrivateKey",
    "Problem",
    "ProblemType",
    "ProtocolError",
    "RequestDecoder",
    "RequestEncoder",
    "ResponseDecoder",
    "ResponseEncoder",
    "SequenceOverflow",
    "TrailingData",
    "TruncatedMessage",
    "UnknownKey",
    "UnsupportedSuite",
    "decode_key_configs",
    "encode_key_configs",
    "fingerprint_of",
    "frame",
    "mode_of_headers",
    "parse_hex_header",
    "parse_time_nonce",
    "report_data",
    "time_nonce",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
