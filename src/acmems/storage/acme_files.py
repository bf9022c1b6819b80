"""The ACME server's records as files under ``[acme-server] dir`` (one acmems, no ``[cluster]``).

One JSON file a record, written atomically (0600: an account holds its key, a certificate record
its chain), in ``accounts/``, ``orders/``, ``authz/``, ``certs/``; ``keys/THUMBPRINT`` and
``serials/SERIAL`` name the account and certificate they point at. Nonces stay in memory."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TypeVar

from acmems.core.acme_records import AcmeAccount, AcmeAuthz, AcmeCertificate, AcmeOrder, from_json, to_json
from acmems.fileio import write_atomic
from acmems.storage.acme_store import KeyInUse, MemoryNonces

__all__ = ["FileAcmeStore"]

R = TypeVar("R", AcmeAccount, AcmeOrder, AcmeAuthz, AcmeCertificate)
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # ids, thumbprints and hex serials: nothing else reaches a path


class FileAcmeStore:
    """:class:`acmems.storage.acme_store.AcmeStore` in a folder; one process writes it (a lock
    keeps the key index and the accounts consistent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nonces = MemoryNonces()
        self._lock = asyncio.Lock()

    def _path(self, kind: str, name: str) -> Path | None:
        return self.directory / kind / name if _SAFE.fullmatch(name) else None

    async def _write(self, kind: str, name: str, text: str) -> None:
        path = self._path(kind, name)
        assert path is not None, "ids are made here"
        await asyncio.to_thread(write_atomic, path, text.encode(), 0o600)

    async def _read(self, kind: str, name: str) -> str | None:
        path = self._path(kind, name)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_text, "utf-8")
        except FileNotFoundError:
            return None

    async def _record(self, record_type: type[R], kind: str, name: str) -> R | None:
        text = await self._read(kind, name)
        return None if text is None else from_json(record_type, text)

    async def new_nonce(self) -> str:
        return self.nonces.new()

    async def use_nonce(self, nonce: str) -> bool:
        return self.nonces.use(nonce)

    async def add_account(self, account: AcmeAccount) -> AcmeAccount:
        async with self._lock:
            existing = await self.account_by_thumbprint(account.thumbprint)
            if existing is not None:
                return existing
            await self._write("accounts", account.id, to_json(account))
            await self._write("keys", account.thumbprint, account.id)
            return account

    async def account(self, account_id: str) -> AcmeAccount | None:
        return await self._record(AcmeAccount, "accounts", account_id)

    async def account_by_thumbprint(self, thumbprint: str) -> AcmeAccount | None:
        account_id = await self._read("keys", thumbprint)
        return None if account_id is None else await self.account(account_id.strip())

    async def save_account(self, account: AcmeAccount, old_thumbprint: str | None = None) -> None:
        async with self._lock:
            if old_thumbprint is not None and old_thumbprint != account.thumbprint:
                other = await self.account_by_thumbprint(account.thumbprint)
                if other is not None:
                    raise KeyInUse(other.id)
                await self._write("keys", account.thumbprint, account.id)
            await self._write("accounts", account.id, to_json(account))
            if old_thumbprint is not None and old_thumbprint != account.thumbprint:
                old = self._path("keys", old_thumbprint)
                if old is not None:
                    await asyncio.to_thread(old.unlink, True)

    async def add_order(self, order: AcmeOrder, authzs: list[AcmeAuthz]) -> None:
        for authz in authzs:
            await self._write("authz", authz.id, to_json(authz))
        await self._write("orders", order.id, to_json(order))
        listing = self.directory / "account-orders" / order.account
        await asyncio.to_thread(_append_line, listing, order.id)

    async def order(self, order_id: str) -> AcmeOrder | None:
        return await self._record(AcmeOrder, "orders", order_id)

    async def save_order(self, order: AcmeOrder) -> None:
        await self._write("orders", order.id, to_json(order))

    async def orders_of(self, account_id: str) -> list[str]:
        text = await self._read("account-orders", account_id)
        return [] if text is None else text.split()

    async def authz(self, authz_id: str) -> AcmeAuthz | None:
        return await self._record(AcmeAuthz, "authz", authz_id)

    async def save_authz(self, authz: AcmeAuthz) -> None:
        await self._write("authz", authz.id, to_json(authz))

    async def add_certificate(self, certificate: AcmeCertificate) -> None:
        await self._write("certs", certificate.id, to_json(certificate))
        await self._write("serials", certificate.serial, certificate.id)

    async def certificate(self, certificate_id: str) -> AcmeCertificate | None:
        return await self._record(AcmeCertificate, "certs", certificate_id)

    async def certificate_by_serial(self, serial: str) -> AcmeCertificate | None:
        certificate_id = await self._read("serials", serial)
        return None if certificate_id is None else await self.certificate(certificate_id.strip())

    async def accounts_by_serial(self) -> dict[str, str]:
        found = {}
        for serial in await asyncio.to_thread(_serial_names, self.directory / "serials"):
            certificate = await self.certificate_by_serial(serial)
            if certificate is not None:
                found[serial] = certificate.account
        return found


def _serial_names(folder: Path) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if _SAFE.fullmatch(name)]
    except FileNotFoundError:
        return []


def _append_line(path: Path, line: str) -> None:
    # The list of an account's orders only grows; a line is written whole or not at all (O_APPEND).
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
