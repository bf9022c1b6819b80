"""The ACME server's records in the cluster database (``acmems_acme_records``, ``acmems_acme_nonces``),
so that every instance answers every request of a client: a client behind plain round robin lands
on another instance with each request."""

from __future__ import annotations

import secrets
from typing import TypeVar

from acmems.cluster.database import ClusterDb
from acmems.core.acme_records import AcmeAccount, AcmeAuthz, AcmeCertificate, AcmeOrder, from_json, to_json
from acmems.storage.acme_store import NONCE_LIFETIME, KeyInUse

__all__ = ["DatabaseAcmeStore"]

R = TypeVar("R", AcmeAccount, AcmeOrder, AcmeAuthz, AcmeCertificate)
_SWEEP_EVERY = 500  # nonces issued between two removals of the expired ones
_UPSERT = (
    "INSERT INTO acmems_acme_records (kind, id, owner, body) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (kind, id) DO UPDATE SET body = EXCLUDED.body"
)


class DatabaseAcmeStore:
    """:class:`acmems.storage.acme_store.AcmeStore` in PostgreSQL. Every method raises
    :class:`acmems.errors.DatabaseError` when the database does not answer."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db
        self._issued = 0

    async def _put(self, kind: str, ident: str, body: str, owner: str | None = None) -> None:
        async with self.db.transaction() as cursor:
            await cursor.execute(_UPSERT, (kind, ident, owner, body))

    async def _get(self, kind: str, ident: str) -> str | None:
        async with self.db.transaction() as cursor:
            await cursor.execute("SELECT body FROM acmems_acme_records WHERE kind = %s AND id = %s", (kind, ident))
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def _record(self, record_type: type[R], kind: str, ident: str) -> R | None:
        body = await self._get(kind, ident)
        return None if body is None else from_json(record_type, body)

    async def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(16)
        self._issued += 1
        async with self.db.transaction() as cursor:
            await cursor.execute("INSERT INTO acmems_acme_nonces (nonce) VALUES (%s)", (nonce,))
            if self._issued % _SWEEP_EVERY == 0:
                await cursor.execute(
                    "DELETE FROM acmems_acme_nonces WHERE issued < now() - %s * interval '1 second'", (NONCE_LIFETIME,)
                )
        return nonce

    async def use_nonce(self, nonce: str) -> bool:
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "DELETE FROM acmems_acme_nonces WHERE nonce = %s AND issued > now() - %s * interval '1 second' "
                "RETURNING 1",
                (nonce, NONCE_LIFETIME),
            )
            return await cursor.fetchone() is not None

    async def add_account(self, account: AcmeAccount) -> AcmeAccount:
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_acme_records (kind, id, body) VALUES ('key', %s, %s) "
                "ON CONFLICT (kind, id) DO NOTHING RETURNING 1",
                (account.thumbprint, account.id),
            )
            if await cursor.fetchone() is not None:
                await cursor.execute(
                    "INSERT INTO acmems_acme_records (kind, id, body) VALUES ('account', %s, %s)",
                    (account.id, to_json(account)),
                )
                return account
        existing = await self.account_by_thumbprint(account.thumbprint)
        assert existing is not None, "a key row names its account"
        return existing

    async def account(self, account_id: str) -> AcmeAccount | None:
        return await self._record(AcmeAccount, "account", account_id)

    async def account_by_thumbprint(self, thumbprint: str) -> AcmeAccount | None:
        account_id = await self._get("key", thumbprint)
        return None if account_id is None else await self.account(account_id)

    async def save_account(self, account: AcmeAccount, old_thumbprint: str | None = None) -> None:
        async with self.db.transaction() as cursor:
            if old_thumbprint is not None and old_thumbprint != account.thumbprint:
                await cursor.execute(
                    "INSERT INTO acmems_acme_records (kind, id, body) VALUES ('key', %s, %s) "
                    "ON CONFLICT (kind, id) DO NOTHING RETURNING 1",
                    (account.thumbprint, account.id),
                )
                if await cursor.fetchone() is None:
                    await cursor.execute(
                        "SELECT body FROM acmems_acme_records WHERE kind = 'key' AND id = %s", (account.thumbprint,)
                    )
                    row = await cursor.fetchone()
                    raise KeyInUse(str(row[0]) if row else "?")
                await cursor.execute(
                    "DELETE FROM acmems_acme_records WHERE kind = 'key' AND id = %s", (old_thumbprint,)
                )
            await cursor.execute(
                "UPDATE acmems_acme_records SET body = %s WHERE kind = 'account' AND id = %s",
                (to_json(account), account.id),
            )

    async def add_order(self, order: AcmeOrder, authzs: list[AcmeAuthz]) -> None:
        async with self.db.transaction() as cursor:
            for authz in authzs:
                await cursor.execute(
                    "INSERT INTO acmems_acme_records (kind, id, owner, body) VALUES ('authz', %s, %s, %s)",
                    (authz.id, authz.account, to_json(authz)),
                )
            await cursor.execute(
                "INSERT INTO acmems_acme_records (kind, id, owner, body) VALUES ('order', %s, %s, %s)",
                (order.id, order.account, to_json(order)),
            )

    async def order(self, order_id: str) -> AcmeOrder | None:
        return await self._record(AcmeOrder, "order", order_id)

    async def save_order(self, order: AcmeOrder) -> None:
        await self._put("order", order.id, to_json(order), order.account)

    async def orders_of(self, account_id: str) -> list[str]:
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "SELECT id FROM acmems_acme_records WHERE kind = 'order' AND owner = %s ORDER BY created",
                (account_id,),
            )
            return [str(row[0]) for row in await cursor.fetchall()]

    async def authz(self, authz_id: str) -> AcmeAuthz | None:
        return await self._record(AcmeAuthz, "authz", authz_id)

    async def save_authz(self, authz: AcmeAuthz) -> None:
        await self._put("authz", authz.id, to_json(authz), authz.account)

    async def add_certificate(self, certificate: AcmeCertificate) -> None:
        async with self.db.transaction() as cursor:
            for kind, ident, body in (
                ("cert", certificate.id, to_json(certificate)),
                ("serial", certificate.serial, certificate.id),
            ):
                await cursor.execute(_UPSERT, (kind, ident, certificate.account, body))

    async def certificate(self, certificate_id: str) -> AcmeCertificate | None:
        return await self._record(AcmeCertificate, "cert", certificate_id)

    async def certificate_by_serial(self, serial: str) -> AcmeCertificate | None:
        certificate_id = await self._get("serial", serial)
        return None if certificate_id is None else await self.certificate(certificate_id)

    async def accounts_by_serial(self) -> dict[str, str]:
        async with self.db.transaction() as cursor:
            await cursor.execute("SELECT id, owner FROM acmems_acme_records WHERE kind = 'serial'")
            return {str(serial): str(owner) for serial, owner in await cursor.fetchall()}
