"""Certificate stores, chosen by a ``[storage]`` block's ``type``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from acmems.core.settings import DatabaseStorage, FileStorage, StorageSettings
from acmems.storage.base import (
    CachedCertificate,
    CertificateStore,
    Claim,
    LocalClaim,
    Origin,
    StaleFence,
    csr_digest,
    describe_chain,
)
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

if TYPE_CHECKING:
    from acmems.cluster import ClusterDb

__all__ = [
    "CachedCertificate",
    "CertificateStore",
    "Claim",
    "LocalClaim",
    "Origin",
    "StaleFence",
    "csr_digest",
    "describe_chain",
    "make_store",
]


def make_store(
    settings: StorageSettings, *, track_requests: bool = False, cluster: ClusterDb | None = None
) -> CertificateStore:
    """The store for a ``[storage]`` block (``track_requests``: see :class:`FileCache`); a
    ``type = database`` block needs the ``cluster`` connection (the configuration ensures one)."""
    if isinstance(settings, FileStorage):
        return FileCache(settings, track_requests=track_requests)
    if isinstance(settings, DatabaseStorage):
        from acmems.cluster import DatabaseStore

        assert cluster is not None, "type = database without [cluster] is refused by the configuration"
        return DatabaseStore(settings, cluster, track_requests=track_requests)
    return NoCache(settings.name)
