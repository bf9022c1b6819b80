"""HTTP-01 key authorizations shared through the cluster database, so that every instance's
challenge listener answers every instance's tokens (the CA's fetches may land on any of them).

A token is committed before the CA is told to validate and deleted afterwards; a lookup that finds
nothing is never remembered (the next fetch asks again).

The challenge listener is public: anybody may ask for any token, as fast as they like. Lookups share
the database pool with the leases, the heartbeat and ``/sign``'s claims, so at most
:data:`LOOKUP_SLOTS` of them run at once (the rest wait their turn): however many arrive, the pool
keeps connections for the rest.
"""

from __future__ import annotations

import asyncio

from acmems.cluster.database import ClusterDb

__all__ = ["LOOKUP_SLOTS", "SharedTokens"]

LOOKUP_SLOTS = 2


class SharedTokens:
    """``acmems_http01``: token -> key authorization."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db
        self._lookups = asyncio.Semaphore(LOOKUP_SLOTS)

    async def put(self, token: str, key_authorization: str) -> None:
        """Publish a token (committed when this returns). Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_http01 (token, key_authorization, holder) VALUES (%s, %s, %s) "
                "ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization, "
                "holder = EXCLUDED.holder, added = now()",
                (token, key_authorization, self.db.name),
            )

    async def delete(self, token: str) -> None:
        """Withdraw a token. Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute("DELETE FROM acmems_http01 WHERE token = %s", (token,))

    async def get(self, token: str) -> str | None:
        """The key authorization of ``token`` published by any instance (one of :data:`LOOKUP_SLOTS`
        lookups at a time). Raises :class:`DatabaseError`."""
        async with self._lookups, self.db.transaction() as cursor:
            await cursor.execute("SELECT key_authorization FROM acmems_http01 WHERE token = %s", (token,))
            row = await cursor.fetchone()
        return str(row[0]) if row is not None else None
