"""Models in a fleet: which model a request names, and the models verified enclaves serve.

The SDK reads ``model`` from the plaintext JSON body it is about to seal (POST
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``)
and the fleet chooses only among verified enclaves trusted with that model
(:attr:`Verification.models`: the release's list, or the software attester's measured
engine configuration). A model no verified enclave serves raises :class:`UnknownModel`
before anything is sent.

``GET /v1/models`` is answered here, from verified evidence, without a request: the
list an enclave's engine would give is one enclave's view and unauthenticated as a
fleet-wide answer, while the verified lists are exactly what requests can be routed
to. (A fleet whose evidence names no models forwards the call to an enclave, as before.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sealgate.protocol.public.headers import ANSWERED_BY

from .affinity import ROUTE_TAG_HEADER, routing_tag
from .errors import NoVerifiedEnclave

__all__ = ["UnknownModel", "Route", "Router", "MODEL_PATHS", "models_listing"]

#: Paths (suffixes of the request path) whose JSON body names the model.
MODEL_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
_MAX_PARSED = 64 * 1024 * 1024


class UnknownModel(NoVerifiedEnclave):
    """No verified enclave serves the requested model; nothing was sent.

    ``available`` lists the models verified enclaves do serve.
    """

    def __init__(self, model: str, available: list[str], gateway_url: str) -> None:
        listed = ", ".join(available) if available else "(none)"
        super().__init__(
            f"no verified enclave behind {gateway_url} serves the model {model!r}; nothing was "
            f"sent. Models available: {listed}"
        )
        self.model = model
        self.available = available


@dataclass(frozen=True, slots=True)
class Route:
    """What the SDK routes a request by: its model, and its routing tag (cache affinity)."""

    model: str | None = None
    tag: bytes | None = None


class Router:
    """Derives a :class:`Route` from a request's method, path and plaintext body.

    ``affinity_secret``: the key of the routing tag (None: cache affinity off).
    """

    def __init__(self, affinity_secret: bytes | None = None) -> None:
        self.affinity_secret = affinity_secret

    def route(self, method: str, path: str, body: bytes) -> Route:
        if method.upper() != "POST" or not path.rstrip("/").endswith(MODEL_PATHS):
            return Route()
        if not body or len(body) > _MAX_PARSED:
            return Route()
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Route()  # not JSON: the enclave's engine answers it; no model to route by
        if not isinstance(parsed, dict):
            return Route()
        model = parsed.get("model")
        model = model if isinstance(model, str) and model else None
        tag = None
        if self.affinity_secret is not None:
            tag = routing_tag(self.affinity_secret, model, parsed)
        return Route(model, tag)


def router(cache_affinity: bool, secret: bytes | None) -> Router:
    """The router a client uses: with cache affinity, keyed by ``secret`` (random if None)."""
    if not cache_affinity:
        if secret is not None:
            raise ValueError("affinity_secret is only used with cache_affinity=True")
        return Router()
    if secret is None:
        secret = os.urandom(32)
    if len(secret) < 16:
        raise ValueError("affinity_secret must be at least 16 random bytes")
    return Router(bytes(secret))


def is_models_listing(method: str, path: str) -> str | None:
    """For ``GET /v1/models`` (``""``) or ``GET /v1/models/{id}`` (the id); else None."""
    if method.upper() != "GET":
        return None
    trimmed = path.rstrip("/")
    if trimmed.endswith("/v1/models"):
        return ""
    head, _, last = trimmed.rpartition("/")
    if head.endswith("/v1/models") and last:
        return last
    return None


def models_listing(served: Mapping[str, list[str]], model_id: str) -> tuple[int, dict[str, Any]]:
    """The OpenAI-shaped answer for the models ``served`` (model -> enclave ids)."""

    def entry(model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "sealgate",
            "sealgate_enclaves": served[model],
        }

    if not model_id:
        return 200, {"object": "list", "data": [entry(m) for m in sorted(served)]}
    if model_id in served:
        return 200, entry(model_id)
    return 404, {
        "error": {
            "message": f"no verified enclave serves the model {model_id!r}; available: "
            + (", ".join(sorted(served)) or "(none)"),
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }


#: Headers of a locally answered models listing (the source is named, not an enclave).
MODELS_HEADERS = [("content-type", "application/json"), (ANSWERED_BY.lower(), "client")]


def route_tag_header(tag: bytes | None) -> list[tuple[str, str]]:
    """The routing-tag header for the gateway (empty without cache affinity)."""
    return [] if tag is None else [(ROUTE_TAG_HEADER, tag[:16].hex())]


def answer_locally(fleet: Any, method: str, path: str) -> tuple[int, bytes] | None:
    """The status and JSON body for a models listing, from verified evidence; else None.

    None also when no verified enclave names its models: then the call is forwarded.
    """
    model_id = is_models_listing(method, path)
    if model_id is None:
        return None
    fleet.ensure_fresh()
    served = fleet.served_models()
    if not served:
        return None
    status, body = models_listing(served, model_id)
    return status, json.dumps(body).encode()


__all__ += ["router", "is_models_listing", "answer_locally", "route_tag_header", "MODELS_HEADERS"]
