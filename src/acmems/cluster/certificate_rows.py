"""The rows of ``acmems_certificates`` as :class:`CachedCertificate` values, and the statements
that write them (:class:`acmems.cluster.store.DatabaseStore`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from acmems.storage.base import CachedCertificate

__all__ = ["META", "UPSERT", "database_now", "entry_of_row", "epoch", "from_epoch", "shared_name"]

UPSERT = (
    "INSERT INTO acmems_certificates (storage, digest, csr, chain, names, serial, not_before, not_after, "
    "renew_at, profile, verification, requested_at, next_ari_check, revoked, issued_by, ca, updated) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, false, %s, %s, clock_timestamp()) "
    "ON CONFLICT (storage, digest) DO UPDATE SET csr = EXCLUDED.csr, chain = EXCLUDED.chain, "
    "names = EXCLUDED.names, serial = EXCLUDED.serial, not_before = EXCLUDED.not_before, "
    "not_after = EXCLUDED.not_after, renew_at = EXCLUDED.renew_at, profile = EXCLUDED.profile, "
    "verification = EXCLUDED.verification, requested_at = EXCLUDED.requested_at, "
    "next_ari_check = NULL, revoked = false, issued_by = EXCLUDED.issued_by, ca = EXCLUDED.ca, "
    "updated = clock_timestamp()"
)
META = "digest, names, serial, not_before, not_after, renew_at, requested_at, profile, verification, next_ari_check, ca"


def epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def from_epoch(value: float) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


def entry_of_row(row: tuple[Any, ...]) -> CachedCertificate:
    digest, names, serial, not_before, not_after, renew_at, requested, profile, verification, ari, ca = row[:11]
    return CachedCertificate(
        digest, tuple(names), int(serial, 16), not_before, not_after, renew_at, epoch(requested),
        shared_name(profile), shared_name(verification), epoch(ari), shared_name(ca),
    )  # fmt: skip


async def database_now(cursor: psycopg.AsyncCursor[TupleRow]) -> datetime:
    # The database's clock (the looks compare with its `updated` times, never an instance's).
    await cursor.execute("SELECT now()")
    row = await cursor.fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def shared_name(name: str | None) -> str | None:
    """One string object for each block name."""
    # A block name repeats in every row: one string object for all (a large index is smaller).
    return sys.intern(name) if name is not None else None
