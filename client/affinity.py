"""Cache-affine routing the gateway cannot read: a keyed routing tag and rendezvous hashing.

Engines reuse the KV cache of a prompt prefix they computed before, so the turns of a
conversation are fastest on the enclave that served its earlier turns. The SDK, which
holds the plaintext, derives a *routing tag*: HMAC-SHA256 under a secret the gateway
never sees, over the conversation's anchor - the model, the system prompt (or the
Responses ``instructions``) and the first user turn. Every later turn of the same
conversation repeats that anchor, so it gets the same tag; a different conversation
gets an unrelated tag, so conversations still spread over the fleet.

The tag picks the enclave by rendezvous (highest-random-weight) hashing: each verified
enclave serving the model gets the weight ``SHA-256(tag || enclave id)`` and the
highest usable one wins. When an enclave leaves, only the tags whose winner it was move
(to their second choice); when one joins, only the tags it now wins move to it.

The gateway sees the tag (``Sealgate-Route-Tag``), which it may use for stickiness and
nothing else: it learns which requests belong to one conversation (linkability, see the
README's threat model), never their content, and cannot compute the tag of a guessed
prompt without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sealgate.protocol.public.headers import ROUTE_TAG

__all__ = [
    "ROUTE_TAG_HEADER",
    "OVERLOADED",
    "routing_tag",
    "rendezvous_order",
    "rendezvous_winner",
    "affine_choice",
]

#: Header carrying the (hex) routing tag to the gateway.
ROUTE_TAG_HEADER = ROUTE_TAG
_CONTEXT = b"sealgate route tag v1\x00"
#: Load hint (in flight / capacity, from the enclave's health) at which an enclave is
#: passed over for the tag's next choice: a warm cache is not worth a full queue.
OVERLOADED = 0.9


def _anchor(body: Mapping[str, Any]) -> list[Any] | None:
    """The part of a request every later turn of its conversation repeats, or None."""
    messages = body.get("messages")
    if isinstance(messages, list):  # chat/completions
        system = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
        opening = next(
            (m for m in messages if isinstance(m, dict) and m.get("role") != "system"), None
        )
        return [system, opening] if opening is not None or system else None
    if "input" in body and isinstance(body.get("instructions") or "", str):  # responses
        items = body["input"]
        first = items if isinstance(items, str) else (items[0] if items else None)
        if first is None:
            return None
        return [body.get("instructions") or "", first]
    return None


def routing_tag(secret: bytes, model: str | None, body: Mapping[str, Any]) -> bytes | None:
    """HMAC-SHA256 of the conversation's anchor under ``secret``; None if it has none.

    Completions and embeddings have no conversation structure: they get no tag and are
    spread by load as without affinity.
    """
    anchor = _anchor(body)
    if anchor is None:
        return None
    canonical = json.dumps(
        [model or "", anchor], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    return hmac.new(secret, _CONTEXT + canonical, hashlib.sha256).digest()


def _weight(tag: bytes, enclave_id: str) -> bytes:
    return hashlib.sha256(tag + b"\x00" + enclave_id.encode()).digest()


def rendezvous_order(tag: bytes, enclave_ids: Iterable[str]) -> list[str]:
    """``enclave_ids`` from the tag's first choice to its last."""
    return sorted(enclave_ids, key=lambda e: _weight(tag, e), reverse=True)


def rendezvous_winner(tag: bytes, enclave_ids: Sequence[str]) -> str:
    """The enclave that holds ``tag``: the highest weight among ``enclave_ids``."""
    if not enclave_ids:
        raise ValueError("rendezvous over no enclaves")
    return max(enclave_ids, key=lambda e: _weight(tag, e))


def affine_choice(
    tag: bytes, loads: Mapping[str, float], overloaded: float = OVERLOADED
) -> str | None:
    """The tag's first choice among ``loads`` (enclave id -> load hint) that is not overloaded.

    None when every candidate is overloaded: the caller then spreads by load.
    """
    return next((e for e in rendezvous_order(tag, loads) if loads[e] < overloaded), None)
