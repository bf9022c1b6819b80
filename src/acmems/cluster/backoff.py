"""The CA's rateLimited pauses, shared by every instance of a cluster (``acmems_ca_pauses``): once
the CA has asked one instance to wait for an account, a set of names, a registered domain or a name,
no instance sends an order in that scope before then."""

from __future__ import annotations

from collections.abc import Sequence

from acmems.cluster.database import ClusterDb
from acmems.core.pause_scope import PauseScope, Scope
from acmems.storage.pauses import paused

__all__ = ["SharedBackoff"]


class SharedBackoff:
    """Per account (``acme-server``) and scope; the times are the database's."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def check(self, account: str, scopes: Sequence[PauseScope]) -> None:
        """Raise a 429 naming the longest pause that holds an order in ``scopes``. Raises
        :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "SELECT scope, value, extract(epoch FROM until), reason FROM acmems_ca_pauses "
                "WHERE acme_server = %s AND until > now() AND (scope, value) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY until DESC LIMIT 1",
                (account, [s.kind.value for s in scopes], [s.value for s in scopes]),
            )
            row = await cursor.fetchone()
        if row is not None:
            raise paused(PauseScope(Scope(row[0]), row[1]), row[3], float(row[2]))

    async def hold(self, account: str, scope: PauseScope, seconds: int, reason: str) -> None:
        """Note the CA's pause for every instance (a longer one already noted stays)."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_ca_pauses AS p (acme_server, scope, value, until, reason) "
                "VALUES (%s, %s, %s, now() + %s * interval '1 second', %s) "
                "ON CONFLICT (acme_server, scope, value) DO UPDATE "
                "SET until = EXCLUDED.until, reason = EXCLUDED.reason WHERE p.until < EXCLUDED.until",
                (account, scope.kind.value, scope.value, seconds, reason[:300]),
            )
