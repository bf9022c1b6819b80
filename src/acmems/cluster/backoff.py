"""The CA's rateLimited Retry-After, shared by every instance of a cluster (``acmems_accounts``):
once the CA has asked one instance to wait, no instance sends an order to it before then."""

from __future__ import annotations

import math

from acmems.cluster.database import ClusterDb
from acmems.errors import CaError, Kind

__all__ = ["SharedBackoff"]


class SharedBackoff:
    """Per account (``acme-server``); the times are the database's."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def check(self, account: str) -> None:
        """Raise a 429 with the remaining seconds while the CA's pause lasts. Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "SELECT extract(epoch FROM backoff_until - now()), backoff_reason FROM acmems_accounts "
                "WHERE acme_server = %s AND backoff_until > now()",
                (account,),
            )
            row = await cursor.fetchone()
        if row is not None:
            waiting = max(1, math.ceil(float(row[0])))
            raise CaError(
                f"the CA asked this account to wait ({row[1]}); no instance of the cluster sends it an "
                f"order for {waiting} s more",
                kind=Kind.RATE_LIMITED,
                retry_after=waiting,
                problem_type="rateLimited",  # the CA's own word, kept: another CA may be tried
            )

    async def hold(self, account: str, seconds: int, reason: str) -> None:
        """Note the CA's pause for every instance (a longer one already noted stays)."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "UPDATE acmems_accounts SET backoff_until = greatest(coalesce(backoff_until, now()), "
                "now() + %s * interval '1 second'), backoff_reason = %s WHERE acme_server = %s",
                (seconds, reason[:300], account),
            )
