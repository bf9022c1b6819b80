"""The rate limits' events in the cluster database (``acmems_rate_events``)."""

from __future__ import annotations

from acmems.cluster.database import ClusterDb
from acmems.core.rate_limits import Event
from acmems.storage.rate_log import KEEP

__all__ = ["DatabaseRateLog"]


class DatabaseRateLog:
    """``acmems_rate_events`` in the cluster database: every instance counts the whole cluster's orders."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def events(self, account: str) -> list[Event]:
        """Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "SELECT extract(epoch FROM at), kind, names, domains FROM acmems_rate_events "
                "WHERE account = %s AND at > now() - %s * interval '1 second'",
                (account, KEEP),
            )
            rows = await cursor.fetchall()
        return [Event(float(at), kind, names, tuple(domains)) for at, kind, names, domains in rows]

    async def record(self, account: str, event: Event) -> None:
        """Raises :class:`DatabaseError`; events older than :data:`KEEP` are removed meanwhile."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_rate_events (account, at, kind, names, domains) "
                "VALUES (%s, to_timestamp(%s), %s, %s, %s)",
                (account, event.at, event.kind, event.names, list(event.domains)),
            )
            await cursor.execute("DELETE FROM acmems_rate_events WHERE at < now() - %s * interval '1 second'", (KEEP,))
