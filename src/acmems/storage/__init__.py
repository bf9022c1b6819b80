"""Certificate caches, chosen by a ``[storage]`` block's ``type``."""

from __future__ import annotations

from typing import Protocol

from acmems.config import FileStorage, NoneStorage, StorageSettings
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

__all__ = ["CertificateCache", "make_cache"]


class CertificateCache(Protocol):
    """Stores each CSR's certificate chain until it is due for renewal."""

    name: str

    def get(self, csr_pem: bytes) -> bytes | None:
        """The cached chain for exactly these CSR bytes, if it is still good to serve."""
        ...

    def put(self, csr_pem: bytes, chain_pem: bytes) -> None:
        """Store a chain for these CSR bytes (atomically). Raises ``OSError`` on failure."""
        ...


def make_cache(settings: StorageSettings) -> CertificateCache:
    """The cache adapter for a ``[storage]`` block."""
    if isinstance(settings, FileStorage):
        return FileCache(settings)
    assert isinstance(settings, NoneStorage)
    return NoCache(settings.name)
