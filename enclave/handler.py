"""What both request modes hold: the settings, keys, engine, metrics, body intake and slots."""

from __future__ import annotations

from dataclasses import dataclass

from .config import EnclaveConfig
from .engines import Engine
from .intake import BodyIntake
from .keyring import KeyRing
from .metrics import EnclaveMetrics
from .slots import EngineSlots

__all__ = ["ModeHandler"]


@dataclass(eq=False)
class ModeHandler:
    """The base of each mode's ASGI app (:mod:`.sealed`, :mod:`.native`); one enclave's
    modes share one intake and one set of slots, so their limits are the enclave's."""

    config: EnclaveConfig
    keyring: KeyRing
    engine: Engine
    metrics: EnclaveMetrics
    intake: BodyIntake
    slots: EngineSlots
