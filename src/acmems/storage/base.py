"""What every certificate store offers the server (:class:`CertificateStore`), and the values it
speaks in. The server, the renewer, the workers and the commands use only this interface."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["CachedCertificate", "CertificateStore", "Origin", "csr_digest"]


@functools.lru_cache(maxsize=4096)  # a cache hit asks for it at every request
def csr_digest(csr_pem: bytes, profile: str | None = None) -> str:
    """The cache key: hex SHA-384 of the CSR bytes (the original's), covering the profile if any."""
    if profile is None:
        return hashlib.sha384(csr_pem).hexdigest()
    return hashlib.sha384(csr_pem + b"\n#acmems-profile=" + profile.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedCertificate:
    """What a store knows of one cached certificate without reading it."""

    digest: str
    names: tuple[str, ...]
    serial: int
    not_before: datetime
    not_after: datetime
    renew_at: datetime
    last_requested: float = 0.0  # Unix time a client last asked for it
    profile: str | None = None
    verification: str | None = None
    next_ari_check: float = 0.0  # Unix time to ask the CA's renewal-info again


@dataclass(frozen=True, slots=True)
class Origin:
    """How a stored certificate came about: its profile, the verification that proved it (a renewal
    uses it again), and whether a client asked for it (``requested``) or a background renewal did."""

    profile: str | None = None
    verification: str | None = None
    requested: bool = True


_CLIENT = Origin()


class CertificateStore(Protocol):
    """Keeps each CSR's certificate chain until it is due for renewal (``[storage]`` ``type``)."""

    name: str
    where: str  # for log lines and ``acmems list``: a directory, or "-"

    async def get(
        self, csr_pem: bytes, profile: str | None = None, *, allow_due: bool = False, now: datetime | None = None
    ) -> bytes | None:
        """The chain for exactly these CSR bytes and profile while it is not due for renewal (with
        ``allow_due``: while it is valid at all). Never blocks the event loop on file IO."""
        ...

    async def put(self, csr_pem: bytes, chain_pem: bytes, origin: Origin = _CLIENT) -> None:
        """Store a chain for these CSR bytes, atomically. Raises ``OSError`` or ``ValueError``."""
        ...

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Drop what is remembered in memory of this CSR's certificate: the next ``get`` reads it afresh."""
        ...

    async def load_index(self) -> int:
        """Read what is stored (names, expiry) into memory; how many certificates."""
        ...

    def entries(self) -> list[CachedCertificate]:
        """The certificates known, soonest renewal first."""
        ...

    def count(self) -> int:
        """How many certificates are known."""
        ...

    def soonest_expiry(self) -> datetime | None:
        """When the first certificate known expires, if there is one."""
        ...

    def update(self, entry: CachedCertificate) -> None:
        """Replace what is known of a certificate (a new renewal time from ARI, the next check)."""
        ...

    def note_requested(self, digest: str, when: float) -> None:
        """Record that a client asked for this certificate (answered by another process)."""
        ...

    def take_requested(self) -> set[str]:
        """The digests asked for since the last call (a worker process reports them)."""
        ...

    async def read(self, entry: CachedCertificate) -> tuple[bytes, bytes]:
        """The stored CSR and chain of ``entry`` (for its renewal). Raises ``OSError``."""
        ...

    async def remove_serial(self, serial: int) -> int:
        """Remove the certificates with this serial (revoked); how many."""
        ...

    def problems(self) -> list[str]:
        """What keeps this store from working (for ``/health``); empty when fine."""
        ...
