"""What every certificate store offers the server (:class:`CertificateStore`), and the values it
speaks in. The server, the renewer, the workers and the commands use only this interface."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509

from acmems.core.csr import CsrInfo
from acmems.core.renewal import renewal_time

__all__ = [
    "CachedCertificate",
    "CertificateCache",
    "CertificateIndex",
    "CertificateStore",
    "Claim",
    "LocalClaim",
    "OrderClaims",
    "Origin",
    "RequestedSince",
    "StaleFence",
    "csr_digest",
    "describe_chain",
    "find_cached",
    "forget_cached",
]


@functools.lru_cache(maxsize=4096)  # a cache hit asks for it at every request
def csr_digest(csr_pem: bytes, profile: str | None = None) -> str:
    """The cache key: hex SHA-384 of the CSR's PEM (the original's key when the body was just the
    PEM block, as openssl writes it), covering the profile if any."""
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
    ca: str | None = None  # the account that issued it (None: the default, or not known)


def describe_chain(
    digest: str,
    chain: bytes,
    renew_within: timedelta,
    last_requested: float = 0.0,
    profile: str | None = None,
    verification: str | None = None,
    ca: str | None = None,
) -> CachedCertificate:
    """What a store keeps in memory of a chain (its leaf's names, serial, lifetime, renewal time).

    Raises:
        ValueError: the chain does not start with a certificate.
    """
    leaf = x509.load_pem_x509_certificate(chain)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(a) for a in san.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        names = ()
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return CachedCertificate(
        digest,
        names,
        leaf.serial_number,
        not_before,
        not_after,
        renewal_time(not_before, not_after, renew_within),
        last_requested,
        profile,
        verification,
        ca=ca,
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """How a stored certificate came about: its profile, the verification that proved it (a renewal
    uses it again), whether a client asked for it (``requested``) or a background renewal did, the
    fencing number of the claim it was ordered under (a shared store refuses a stale one), and the
    account (``ca``) that issued it."""

    profile: str | None = None
    verification: str | None = None
    requested: bool = True
    fence: int | None = None
    ca: str | None = None  # the account that issued it


class RequestedSince:
    """The digests of certificates clients asked for since the last :meth:`take` (a worker process
    reports them to the main process); with ``tracking`` False, nothing is kept."""

    def __init__(self, tracking: bool) -> None:
        self.tracking = tracking
        self._digests: set[str] = set()

    def add(self, digest: str) -> None:
        """Note one request (when tracking)."""
        if self.tracking:
            self._digests.add(digest)

    def take(self) -> set[str]:
        """The digests noted since the last call."""
        taken, self._digests = self._digests, set()
        return taken


class StaleFence(Exception):
    """``put`` under a claim that another instance has taken over since: the result is not stored."""


class Claim(Protocol):
    """The right to order one CSR's certificate (see :meth:`CertificateStore.claim`).

    ``saved_order`` is the order URL an earlier holder saved (it died before finishing): the new
    holder resumes that order instead of sending a new one.
    """

    fence: int | None
    saved_order: str | None
    lost: bool  # this process may no longer drive the order (a cluster lease lost)

    async def save_order(self, url: str) -> None:
        """Record the order's URL before any of its challenges is answered."""
        ...

    async def release(self) -> None:
        """Give the claim up (the order finished or failed); others waiting may go on."""
        ...

    def abandon(self) -> None:
        """Leave the claim to lapse (this process stops in the middle of the order)."""
        ...


class LocalClaim:
    """A claim of a store that only this process uses: the issuer's single flight is the whole lock."""

    fence: int | None = None
    saved_order: str | None = None
    lost: bool = False  # nobody else can take it

    async def save_order(self, url: str) -> None:
        """Nothing to save: a crash of this process ends its orders."""

    async def release(self) -> None:
        """Nothing to give up."""

    def abandon(self) -> None:
        """Nothing to leave."""


_CLIENT = Origin()


class CertificateCache(Protocol):
    """What answers ``POST /sign`` needs of a store: the chain of a CSR, kept until it is due."""

    name: str

    async def get(
        self, csr_pem: bytes, profile: str | None = None, *, allow_due: bool = False, now: datetime | None = None
    ) -> bytes | None:
        """The chain for exactly these CSR bytes and profile while it is not due for renewal (with
        ``allow_due``: while it is valid at all). Never blocks the event loop on file IO."""
        ...

    async def put(self, csr_pem: bytes, chain_pem: bytes, origin: Origin = _CLIENT) -> None:
        """Store a chain for these CSR bytes, atomically. Raises ``OSError`` or ``ValueError``."""
        ...

    async def put_many(self, items: Sequence[tuple[bytes, bytes, Origin]]) -> None:
        """Store several ``(CSR, chain, origin)`` at once (``acmems import``); raises as :meth:`put`."""
        ...

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Drop what is remembered in memory of this CSR's certificate: the next ``get`` reads it afresh."""
        ...


async def find_cached(
    cache: CertificateCache, csr: CsrInfo, profile: str | None = None, *, allow_due: bool = False
) -> bytes | None:
    """The chain for ``csr``, looked up under each of its keys in turn (:attr:`CsrInfo.keys`: the
    request itself, then the body as posted, the key of caches written before)."""
    for key in csr.keys:
        chain = await cache.get(key, profile, allow_due=allow_due)
        if chain is not None:
            return chain
    return None


def forget_cached(cache: CertificateCache, csr: CsrInfo, profile: str | None = None) -> None:
    """Drop what ``cache`` remembers in memory of ``csr``'s certificate, under each of its keys."""
    for key in csr.keys:
        cache.forget(key, profile)


class CertificateIndex(Protocol):
    """What the renewer, the notifier, ``/status``, ``/metrics`` and ``acmems list`` need of a store:
    what it keeps, without the chains."""

    name: str
    where: str  # for log lines and ``acmems list``: a directory, the database, or "-"
    keeps_certificates: bool  # False: a store that keeps nothing (``type = none``)

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


class OrderClaims(Protocol):
    """One order per CSR: in a cluster, per CSR across every instance."""

    async def claim(self, digest: str, verification: str) -> Claim | None:
        """The right to order the certificate ``digest`` with ``verification``, or None while another
        instance holds it (then :meth:`wait_released`). Raises :class:`DatabaseError`."""
        ...

    async def wait_released(self, digest: str, verification: str) -> None:
        """Return once nobody holds that claim any more (released, or lapsed)."""
        ...


class CertificateStore(CertificateCache, CertificateIndex, OrderClaims, Protocol):
    """Keeps each CSR's certificate chain until it is due for renewal (``[storage]`` ``type``): what
    the backends hand out. Callers that need one side ask for it by its own Protocol."""
