"""``python -m sealgate.enclave`` is ``sealgate enclave``."""

from .cli import enclave

enclave()
