"""HTTP-01 key authorizations shared through the cluster database, so that every instance's
challenge listener answers every instance's tokens (the CA's fetches may land on any of them).

A token is committed before the CA is told to validate and deleted afterwards; a lookup that finds
nothing is never remembered (the next fetch asks again).
"""

from __future__ import annotations

from acmems.cluster.database import ClusterDb

__all__ = ["SharedTokens"]


class SharedTokens:
    """``acmems_http01``: token -> key authorization."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

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
        """The key authorization of ``token`` published by any instance. Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute("SELECT key_authorization FROM acmems_http01 WHERE token = %s", (token,))
            row = await cursor.fetchone()
        return str(row[0]) if row is not None else None
