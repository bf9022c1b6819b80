"""The rows of ``acmems_certificates`` as :class:`CachedCertificate` values, and the statements
that write them (:class:`acmems.cluster.store.DatabaseStore`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import AsyncRowFactory, class_row, tuple_row

from acmems.storage.base import CachedCertificate

__all__ = [
    "META",
    "UPSERT",
    "CertificateRow",
    "certificate_rows",
    "database_now",
    "entry_of_row",
    "epoch",
    "from_epoch",
    "shared_name",
]

UPSERT = (
    "INSERT INTO acmems_certificates (storage, digest, csr, chain, names, serial, not_before, not_after, "
    "renew_at, profile, verification, requested_at, next_ari_check, revoked, issued_by, ca, updated) "
    "VALUES (%(storage)s, %(digest)s, %(csr)s, %(chain)s, %(names)s, %(serial)s, %(not_before)s, %(not_after)s, "
    "%(renew_at)s, %(profile)s, %(verification)s, %(requested_at)s, NULL, false, %(issued_by)s, %(ca)s, "
    "clock_timestamp()) "
    "ON CONFLICT (storage, digest) DO UPDATE SET csr = EXCLUDED.csr, chain = EXCLUDED.chain, "
    "names = EXCLUDED.names, serial = EXCLUDED.serial, not_before = EXCLUDED.not_before, "
    "not_after = EXCLUDED.not_after, renew_at = EXCLUDED.renew_at, profile = EXCLUDED.profile, "
    "verification = EXCLUDED.verification, requested_at = EXCLUDED.requested_at, "
    "next_ari_check = NULL, revoked = false, issued_by = EXCLUDED.issued_by, ca = EXCLUDED.ca, "
    "updated = clock_timestamp()"
)
#: the columns of :class:`CertificateRow` that every query selects
META = "digest, names, serial, not_before, not_after, renew_at, requested_at, profile, verification, next_ari_check, ca"


@dataclass(frozen=True, slots=True)
class CertificateRow:
    """One row of ``acmems_certificates`` as a query selects it (:data:`META`, and where asked for
    the CSR and chain, or whether it is revoked and when it last changed)."""

    digest: str
    names: list[str]
    serial: str  # lower-case hex
    not_before: datetime
    not_after: datetime
    renew_at: datetime
    requested_at: datetime | None
    profile: str | None
    verification: str | None
    next_ari_check: datetime | None
    ca: str | None
    csr: bytes | None = None
    chain: bytes | None = None
    revoked: bool = False
    updated: datetime | None = None


def epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def from_epoch(value: float) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


def entry_of_row(row: CertificateRow) -> CachedCertificate:
    """What the index keeps of a row."""
    return CachedCertificate(
        row.digest,
        tuple(row.names),
        int(row.serial, 16),
        row.not_before,
        row.not_after,
        row.renew_at,
        epoch(row.requested_at),
        shared_name(row.profile),
        shared_name(row.verification),
        epoch(row.next_ari_check),
        shared_name(row.ca),
    )


def certificate_rows() -> AsyncRowFactory[CertificateRow]:
    """The row factory of queries that select :data:`META` (and more of :class:`CertificateRow`)."""
    return class_row(CertificateRow)


async def database_now(cursor: psycopg.AsyncCursor[Any]) -> datetime:
    """The database's clock, in ``cursor``'s transaction (the looks compare with its ``updated``
    times, never an instance's)."""
    async with cursor.connection.cursor(row_factory=tuple_row) as plain:
        await plain.execute("SELECT now()")
        row = await plain.fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def shared_name(name: str | None) -> str | None:
    """One string object for each block name."""
    # A block name repeats in every row: one string object for all (a large index is smaller).
    return sys.intern(name) if name is not None else None
