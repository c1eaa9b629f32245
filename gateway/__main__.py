"""``python -m sealgate.gateway`` is ``sealgate gateway``."""

from .cli import gateway

gateway()
