"""Certificate stores, chosen by a ``[storage]`` block's ``type``."""

from __future__ import annotations

from acmems.settings import FileStorage, StorageSettings
from acmems.storage.base import CachedCertificate, CertificateStore, Origin, csr_digest
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

__all__ = ["CachedCertificate", "CertificateStore", "Origin", "csr_digest", "make_store"]


def make_store(settings: StorageSettings, *, track_requests: bool = False) -> CertificateStore:
    """The store for a ``[storage]`` block (``track_requests``: see :class:`FileCache`)."""
    if isinstance(settings, FileStorage):
        return FileCache(settings, track_requests=track_requests)
    return NoCache(settings.name)
