"""The cluster database's tables, created and upgraded at start (or by ``acmems db init``).

Several instances starting at the same moment on an empty database are safe: the upgrade runs in one
transaction under a transaction-scoped advisory lock, so the others wait and then find it done.
The version in ``acmems_schema`` says which of :data:`MIGRATIONS` have run.
"""

from __future__ import annotations

from typing import LiteralString

import psycopg
from psycopg.rows import TupleRow

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

# The advisory lock key of schema upgrades (any constant; "acmems" in ASCII).
_LOCK = 0x61636D656D73

#: Each entry upgrades the schema by one version (index 0: version 0 -> 1). Never edit a released one.
MIGRATIONS: tuple[LiteralString, ...] = (
    """
    CREATE TABLE acmems_certificates (
        storage text NOT NULL,
        digest text NOT NULL,
        csr bytea NOT NULL,
        chain bytea NOT NULL,
        names text[] NOT NULL,
        serial text NOT NULL,
        not_before timestamptz NOT NULL,
        not_after timestamptz NOT NULL,
        renew_at timestamptz NOT NULL,
        profile text,
        verification text,
        requested_at timestamptz,
        next_ari_check timestamptz,
        revoked boolean NOT NULL DEFAULT false,
        issued_by text NOT NULL,
        updated timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (storage, digest)
    );
    CREATE INDEX acmems_certificates_updated ON acmems_certificates (storage, updated);
    CREATE INDEX acmems_certificates_serial ON acmems_certificates (serial);
    CREATE SEQUENCE acmems_fences;
    CREATE TABLE acmems_leases (
        key text PRIMARY KEY,
        holder text NOT NULL,
        fence bigint NOT NULL,
        expires timestamptz NOT NULL,
        order_url text
    );
    CREATE TABLE acmems_http01 (
        token text PRIMARY KEY,
        key_authorization text NOT NULL,
        holder text NOT NULL,
        added timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE acmems_dns_pending (
        id bigserial PRIMARY KEY,
        server text NOT NULL,
        port integer NOT NULL,
        zone text NOT NULL,
        name text NOT NULL,
        value text NOT NULL,
        holder text NOT NULL,
        instance text NOT NULL,
        added timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE acmems_accounts (
        acme_server text PRIMARY KEY,
        thumbprint text NOT NULL,
        first_instance text NOT NULL,
        added timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE acmems_instances (
        name text NOT NULL,
        instance text PRIMARY KEY,
        started timestamptz NOT NULL DEFAULT now(),
        alive_until timestamptz NOT NULL
    );
    """,
    """
    CREATE TABLE acmems_rate_events (
        id bigserial PRIMARY KEY,
        account text NOT NULL,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        names text NOT NULL,
        domains text[] NOT NULL
    );
    CREATE INDEX acmems_rate_events_account ON acmems_rate_events (account, at);
    ALTER TABLE acmems_accounts ADD COLUMN backoff_until timestamptz, ADD COLUMN backoff_reason text;
    ALTER TABLE acmems_certificates ADD COLUMN ca text;
    """,
    """
    CREATE TABLE acmems_notify_outbox (
        receiver text NOT NULL,
        id text NOT NULL,
        kind text NOT NULL,
        body bytea NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        first_at double precision NOT NULL,
        next_at double precision NOT NULL,
        last_error text NOT NULL DEFAULT '',
        claimed_by text,
        claimed_until timestamptz,
        PRIMARY KEY (receiver, id)
    );
    CREATE TABLE acmems_pickups (
        storage text NOT NULL,
        digest text NOT NULL,
        client text NOT NULL,
        serial text NOT NULL,
        at double precision NOT NULL,
        PRIMARY KEY (storage, digest, client)
    );
    CREATE TABLE acmems_cert_notes (
        storage text NOT NULL,
        digest text NOT NULL,
        renewed double precision,
        renewed_serial text,
        error text,
        error_time double precision,
        updated double precision NOT NULL,
        PRIMARY KEY (storage, digest)
    );
    CREATE TABLE acmems_notify_marks (
        key text PRIMARY KEY,
        began double precision NOT NULL,
        sent double precision NOT NULL
    );
    """,
    """
    CREATE TABLE acmems_ca_pauses (
        acme_server text NOT NULL,
        scope text NOT NULL,
        value text NOT NULL,
        until timestamptz NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (acme_server, scope, value)
    );
    CREATE TABLE acmems_block_orders (
        id bigserial PRIMARY KEY,
        block text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        holder text NOT NULL,
        counted boolean NOT NULL,
        running boolean NOT NULL
    );
    CREATE INDEX acmems_block_orders_block ON acmems_block_orders (block, at);
    """,
    """
    CREATE TABLE acmems_acme_records (
        kind text NOT NULL,
        id text NOT NULL,
        owner text,
        body text NOT NULL,
        created timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX acmems_acme_records_owner ON acmems_acme_records (kind, owner, created);
    CREATE TABLE acmems_acme_nonces (
        nonce text PRIMARY KEY,
        issued timestamptz NOT NULL DEFAULT now()
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


async def schema_version(cursor: psycopg.AsyncCursor[TupleRow]) -> int | None:
    """The version the database holds; None when it has no acmems tables yet."""
    await cursor.execute("SELECT to_regclass('acmems_schema') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    await cursor.execute("SELECT max(version) FROM acmems_schema")
    row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(cursor: psycopg.AsyncCursor[TupleRow]) -> tuple[int, int]:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the cursor's transaction; (before, after).

    Raises:
        RuntimeError: the database holds a newer schema than this acmems knows.
    """
    await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    before = await schema_version(cursor)
    if before is None:
        await cursor.execute("CREATE TABLE acmems_schema (version integer NOT NULL, upgraded timestamptz NOT NULL)")
        before = 0
    if before > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database holds acmems schema version {before}, newer than this acmems knows "
            f"({SCHEMA_VERSION}); upgrade acmems"
        )
    for version in range(before, SCHEMA_VERSION):
        await cursor.execute(MIGRATIONS[version])
        await cursor.execute("INSERT INTO acmems_schema VALUES (%s, now())", (version + 1,))
    return before, SCHEMA_VERSION
