"""What the backends are built from on disk, and the Protocols every backend implements.

:class:`CertificateStore` (with its :class:`Claim`), :class:`~acmems.storage.rate_log.RateLog` and
:class:`~acmems.storage.pauses.CaPauses` are the interfaces the issuer, the renewer and the
commands use; ``file`` and ``none`` are the stores of one acmems (``type = file``, ``type = none``).
The cluster's implementations are in :mod:`acmems.cluster`; :mod:`acmems.backends` chooses. It
imports :mod:`acmems.core`, :mod:`acmems.errors`, :mod:`acmems.fileio` and :mod:`acmems.lru`.
"""

from __future__ import annotations

from acmems.core.settings import FileStorage, NoneStorage
from acmems.storage.base import (
    CachedCertificate,
    CertificateCache,
    CertificateIndex,
    CertificateStore,
    Claim,
    LocalClaim,
    OrderClaims,
    Origin,
    StaleFence,
    csr_digest,
    describe_chain,
    find_cached,
    forget_cached,
)
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

__all__ = [
    "CachedCertificate",
    "CertificateCache",
    "CertificateIndex",
    "CertificateStore",
    "Claim",
    "LocalClaim",
    "OrderClaims",
    "Origin",
    "StaleFence",
    "csr_digest",
    "describe_chain",
    "find_cached",
    "forget_cached",
    "make_local_store",
]


def make_local_store(settings: FileStorage | NoneStorage, *, track_requests: bool = False) -> CertificateStore:
    """The store of a ``type = file`` or ``type = none`` block (``track_requests``: see :class:`FileCache`)."""
    if isinstance(settings, FileStorage):
        return FileCache(settings, track_requests=track_requests)
    return NoCache(settings.name)
