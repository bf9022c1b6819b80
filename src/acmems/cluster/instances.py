"""Bringing an instance into the cluster: the schema, and the row that says this instance is alive
(``acmems_instances``; another live instance with the same name is warned about)."""

from __future__ import annotations

import logging

import psycopg

from acmems.cluster.database import ClusterDb
from acmems.cluster.leases import LEASE_SECONDS
from acmems.cluster.schema import SCHEMA_VERSION, migrate, schema_version
from acmems.errors import AcmemsError, DatabaseError

__all__ = [
    "ADOPT_AFTER_LAPSE",
    "ALIVE_SECONDS",
    "check_account",
    "database_status",
    "leaving",
    "prepare",
    "sweep",
]

log = logging.getLogger("acmems.cluster")
ALIVE_SECONDS = 10.0  # an instance that has not said it is alive for this long is gone (said every second)
# What another instance adopts of one that is gone (its DNS-01 values) waits this much longer
# still: a live instance whose beats were late for a moment keeps what it holds.
ADOPT_AFTER_LAPSE = LEASE_SECONDS


async def prepare(db: ClusterDb, *, upgrade: bool = True, announce: bool = True) -> None:
    """Create or upgrade the schema (with ``upgrade``) and, with ``announce`` (a server), say that
    this instance is alive, once now and then every second.

    Raises:
        AcmemsError: the database does not answer, the role may not create the tables, or the
            schema is newer than this acmems.
    """
    try:
        async with db.transaction() as cursor:
            if upgrade:
                before, after = await migrate(cursor)
                if before != after:
                    log.info("cluster database %s: schema upgraded from version %d to %d", db.where, before, after)
            elif await schema_version(cursor) != SCHEMA_VERSION:
                raise AcmemsError(
                    f"the cluster database {db.where} does not hold acmems schema version {SCHEMA_VERSION}: "
                    "start acmems once, or run `acmems db init CONFIG`"
                )
            if not announce:
                return
            await cursor.execute(
                "SELECT name FROM acmems_instances WHERE name = %s AND alive_until > now()", (db.name,)
            )
            if await cursor.fetchone() is not None:
                log.warning(
                    "another live acmems is named %r in the cluster database: give each instance its own "
                    "[cluster] name (the logs and leases tell them apart by it)",
                    db.name,
                )
            await cursor.execute("DELETE FROM acmems_instances WHERE alive_until < now() - interval '1 day'")
            await cursor.execute(
                "INSERT INTO acmems_instances (name, instance, alive_until) "
                "VALUES (%s, %s, now() + %s * interval '1 second')",
                (db.name, db.instance, ALIVE_SECONDS),
            )
    except DatabaseError as exc:
        raise AcmemsError(
            f"the cluster database {db.where} does not answer ({exc.log_detail or exc.message}); "
            "check [cluster] database and that PostgreSQL runs"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise AcmemsError(
            f"the cluster database {db.where}: {str(exc).splitlines()[0]}; grant the role CREATE on the "
            "database, or create the tables once with `acmems db init CONFIG` as their owner (docs/cluster.md)"
        ) from None
    except (psycopg.Error, RuntimeError) as exc:
        raise AcmemsError(f"the cluster database {db.where}: {str(exc).splitlines()[0]}") from None
    db.heartbeat(
        "UPDATE acmems_instances SET alive_until = now() + %s * interval '1 second' WHERE instance = %s",
        (ALIVE_SECONDS, db.instance),
        late_after=ALIVE_SECONDS / 2,
    )


def leaving(db: ClusterDb) -> tuple[str, tuple[object, ...]]:
    """What an instance that stops cleanly says last: it is gone now (not 10 s later), so its name is
    free for the restart and the others do not wait for its liveness to lapse."""
    return "UPDATE acmems_instances SET alive_until = now() WHERE instance = %s", (db.instance,)


async def database_status(db: ClusterDb) -> str:
    """One line for ``acmems check``: whether the database answers and its schema version."""
    try:
        async with db.direct() as cursor:
            version = await schema_version(cursor)
    except DatabaseError as exc:
        return f"does not answer: {exc.log_detail or exc.message}"
    except psycopg.Error as exc:
        return f"answers, but: {str(exc).splitlines()[0]}"
    if version is None:
        return f"answers; no acmems tables yet (created at the first start, schema version {SCHEMA_VERSION})"
    if version < SCHEMA_VERSION:
        return f"answers; schema version {version} (upgraded to {SCHEMA_VERSION} at the next start)"
    return f"answers; schema version {version}"


async def check_account(db: ClusterDb, acme_server: str, thumbprint: str) -> None:
    """Make sure every instance uses the one account key of the cluster for this CA (the key stays
    a file, copied to every instance; only its thumbprint is kept in the database).

    Raises:
        AcmemsError: this instance's key is another one than the cluster's.
    """
    async with db.transaction() as cursor:
        await cursor.execute(
            "INSERT INTO acmems_accounts (acme_server, thumbprint, first_instance) VALUES (%s, %s, %s) "
            "ON CONFLICT (acme_server) DO NOTHING",
            (acme_server, thumbprint, db.name),
        )
        await cursor.execute(
            "SELECT thumbprint, first_instance FROM acmems_accounts WHERE acme_server = %s", (acme_server,)
        )
        row = await cursor.fetchone()
    if row is not None and row[0] != thumbprint:
        raise AcmemsError(
            f"this instance's account key (thumbprint {thumbprint}) is not the cluster's for {acme_server} "
            f"(thumbprint {row[0]}, first used by {row[1]}): copy the [account] dir of another instance "
            "(account.pem and registration.json) to this one"
        )


async def sweep(db: ClusterDb) -> None:
    """Remove what dead instances left and nobody will take over: HTTP-01 tokens older than an hour
    (a validation takes seconds; a resumed order publishes its token again) and leases lapsed for a
    day (a CSR asked for again takes its lease over at once anyway)."""
    async with db.transaction() as cursor:
        await cursor.execute("DELETE FROM acmems_http01 WHERE added < now() - interval '1 hour'")
        await cursor.execute("DELETE FROM acmems_leases WHERE expires < now() - interval '1 day'")
        await cursor.execute("DELETE FROM acmems_ca_pauses WHERE until < now() - interval '1 day'")
        # limit-new-orders windows are at most 31 days; a running order's row lives as long as it runs
        await cursor.execute(
            "DELETE FROM acmems_block_orders WHERE at < now() - interval '32 days' "
            "OR (NOT running AND NOT counted AND at < now() - interval '1 day')"
        )
