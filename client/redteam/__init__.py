"""Red team: the threat model's promises as executable attacks (``sealgate redteam``)."""

from __future__ import annotations

from .catalogue import CATALOGUE, Attack, Outcome, Result
from .proxy import AdversarialProxy

__all__ = ["CATALOGUE", "AdversarialProxy", "Attack", "Outcome", "Result"]
