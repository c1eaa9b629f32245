"""What the engine serves: ``GET /v1/models``, compared with the models the enclave claims.

The enclave asks its engine at start-up (and then periodically) which models it serves,
logs the answer, and refuses to start - or reports unhealthy while it cannot tell - when
a model it is configured to claim is missing. This is the engine's own word, not a list
typed into the enclave's configuration.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from .base import Engine, EngineError, EngineTimeout
from .encoding import identity_body

__all__ = ["EngineModels", "EngineModelsError", "MissingModels", "check_models", "served_models"]

#: A model list larger than this is refused rather than buffered.
_MAX_LIST_BYTES = 1024 * 1024
MODELS_PATH = "/v1/models"


class EngineModelsError(EngineError):
    """The engine answered ``GET /v1/models`` with something other than a model list."""


class MissingModels(EngineError):
    """The engine is reachable but does not serve every model this enclave claims."""

    def __init__(self, missing: tuple[str, ...], served: tuple[str, ...]) -> None:
        self.missing = missing
        self.served = served
        super().__init__(
            f"the engine does not serve {', '.join(missing)} (it serves: "
            f"{', '.join(served) or 'nothing'}); start the engine with that model or "
            "change the enclave's --model"
        )


@dataclass(frozen=True, slots=True)
class EngineModels:
    """The outcome of the latest check; ``healthy`` decides the enclave's ``/healthz``."""

    claimed: tuple[str, ...]
    checked: bool = False
    served: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """No claim (nothing to check), or a successful check that found every claimed model."""
        if not self.claimed:
            return True
        return self.checked and self.error is None and not self.missing

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "claimed": list(self.claimed),
            "served": list(self.served),
            "missing": list(self.missing),
            "error": self.error,
        }


async def served_models(engine: Engine, timeout: float) -> tuple[str, ...]:
    """The ``id`` of every model in the engine's ``GET /v1/models`` answer.

    Raises :class:`EngineUnavailable` / :class:`EngineTimeout` when the engine cannot
    be asked, :class:`EngineModelsError` when its answer is not an OpenAI model list.
    """
    try:
        async with asyncio.timeout(timeout):
            headers = [(b"accept", b"application/json"), (b"accept-encoding", b"identity")]
            async with engine.stream("GET", MODELS_PATH, headers, b"") as response:
                body = bytearray()
                async for chunk in identity_body(response.headers, response.body):
                    body += chunk
                    if len(body) > _MAX_LIST_BYTES:
                        raise EngineModelsError("the engine's model list is larger than 1 MiB")
    except TimeoutError:
        raise EngineTimeout(
            f"the engine did not answer GET {MODELS_PATH} in {timeout:g} s"
        ) from None
    if response.status != 200:
        raise EngineModelsError(f"the engine answered GET {MODELS_PATH} with {response.status}")
    try:
        document = json.loads(body)
        entries = document["data"]
        ids = tuple(entry["id"] for entry in entries)
    except (ValueError, TypeError, KeyError) as exc:
        raise EngineModelsError(
            f"the engine's GET {MODELS_PATH} answer is not an OpenAI model list ({exc!r})"
        ) from None
    if not all(isinstance(i, str) for i in ids):
        raise EngineModelsError(f"the engine's GET {MODELS_PATH} lists a model id that is not text")
    return ids


async def check_models(engine: Engine, claimed: tuple[str, ...], timeout: float) -> EngineModels:
    """Ask the engine and compare; never raises for an engine failure (it is in ``error``)."""
    try:
        served = await served_models(engine, timeout)
    except EngineError as exc:
        return EngineModels(claimed, checked=True, error=str(exc))
    missing = tuple(m for m in claimed if m not in served)
    return EngineModels(claimed, checked=True, served=served, missing=missing)
