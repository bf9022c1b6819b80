"""Where acmems' ACME server keeps its accounts, orders, authorizations, certificates and nonces:
the :class:`AcmeStore` Protocol, and the nonces of one instance (:class:`MemoryNonces`).

A store without ``[cluster]`` is files under ``[acme-server] dir`` (:mod:`acmems.storage.acme_files`);
a cluster keeps them in the database, so every instance answers every request of a client."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Protocol

from acmems.core.acme_records import AcmeAccount, AcmeAuthz, AcmeCertificate, AcmeOrder

__all__ = ["NONCE_LIFETIME", "AcmeStore", "KeyInUse", "MemoryNonces"]

NONCE_LIFETIME = 3600.0  # a nonce older than this is refused (badNonce, with a fresh one)
_NONCES_KEPT = 100_000  # more unused nonces than this: the oldest are dropped


class KeyInUse(Exception):
    """Another account has this key (``account``: its id)."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account


class AcmeStore(Protocol):
    """The ACME server's records. Every method may raise :class:`acmems.errors.DatabaseError`
    (a cluster) or ``OSError`` (files)."""

    async def new_nonce(self) -> str:
        """A fresh nonce, usable once."""
        ...

    async def use_nonce(self, nonce: str) -> bool:
        """Whether ``nonce`` was issued, is not too old and was not used yet (it is used now)."""
        ...

    async def add_account(self, account: AcmeAccount) -> AcmeAccount:
        """Keep a new account; the account that has this key already, if one has (then nothing is added)."""
        ...

    async def account(self, account_id: str) -> AcmeAccount | None: ...

    async def account_by_thumbprint(self, thumbprint: str) -> AcmeAccount | None: ...

    async def save_account(self, account: AcmeAccount, old_thumbprint: str | None = None) -> None:
        """Replace the account's record; with ``old_thumbprint``, its key changed from that one.

        Raises:
            KeyInUse: another account has the new key.
        """
        ...

    async def add_order(self, order: AcmeOrder, authzs: list[AcmeAuthz]) -> None: ...

    async def order(self, order_id: str) -> AcmeOrder | None: ...

    async def save_order(self, order: AcmeOrder) -> None: ...

    async def orders_of(self, account_id: str) -> list[str]:
        """The ids of the account's orders, oldest first."""
        ...

    async def authz(self, authz_id: str) -> AcmeAuthz | None: ...

    async def save_authz(self, authz: AcmeAuthz) -> None: ...

    async def add_certificate(self, certificate: AcmeCertificate) -> None:
        """Keep it (again: the same id replaces the record)."""
        ...

    async def certificate(self, certificate_id: str) -> AcmeCertificate | None: ...

    async def certificate_by_serial(self, serial: str) -> AcmeCertificate | None: ...

    async def accounts_by_serial(self) -> dict[str, str]:
        """Serial (hex) -> the ACME account it went to, for every certificate given out (``acmems list``)."""
        ...


class MemoryNonces:
    """Nonces of one acmems process: a restart forgets them, and the client's next request gets
    ``badNonce`` with a fresh one (RFC 8555 §6.5: every client retries that)."""

    def __init__(self, lifetime: float = NONCE_LIFETIME, kept: int = _NONCES_KEPT) -> None:
        self.lifetime = lifetime
        self.kept = kept
        self._issued: OrderedDict[str, float] = OrderedDict()  # nonce -> when it was issued

    def new(self) -> str:
        nonce = secrets.token_urlsafe(16)
        self._issued[nonce] = time.monotonic()
        while len(self._issued) > self.kept:
            self._issued.popitem(last=False)
        return nonce

    def use(self, nonce: str) -> bool:
        issued = self._issued.pop(nonce, None)
        return issued is not None and time.monotonic() - issued <= self.lifetime
