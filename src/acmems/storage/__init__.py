"""Certificate caches, chosen by a ``[storage]`` block's ``type``."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from acmems.settings import FileStorage, NoneStorage, StorageSettings
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

__all__ = ["CertificateCache", "make_cache"]


class CertificateCache(Protocol):
    """Stores each CSR's certificate chain until it is due for renewal."""

    name: str

    def get(
        self, csr_pem: bytes, profile: str | None = None, now: datetime | None = None, *, allow_due: bool = False
    ) -> bytes | None:
        """The cached chain for exactly these CSR bytes and profile, if it is still good to serve
        (with ``allow_due``: if it is still valid at all)."""
        ...

    def put(
        self,
        csr_pem: bytes,
        chain_pem: bytes,
        profile: str | None = None,
        verification: str | None = None,
        requested: bool = True,
    ) -> None:
        """Store a chain for these CSR bytes (atomically). Raises ``OSError`` on failure."""
        ...


def make_cache(settings: StorageSettings) -> CertificateCache:
    """The cache adapter for a ``[storage]`` block."""
    if isinstance(settings, FileStorage):
        return FileCache(settings)
    assert isinstance(settings, NoneStorage)
    return NoCache(settings.name)
