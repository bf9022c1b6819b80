"""Leases: one order per CSR in the whole cluster.

A lease is a row of ``acmems_leases`` per cache key with its holder, an expiry and a fencing number
from a sequence. Taking one is one statement (insert, or take over a row whose expiry has passed),
so two instances can never both hold it; expiry is compared with the database's clock, never an
instance's. The holder renews it every :data:`RENEW_EVERY` while the order runs; a dead holder's
lease lapses after :data:`LEASE_SECONDS`. The order URL is saved in the row before any challenge is
answered, so the next holder resumes that order. A certificate is stored only under the current
fence (checked in the storing transaction, see :mod:`acmems.cluster.store`), so a holder that was
stopped past its lease cannot overwrite its successor's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from acmems.cluster.database import ClusterDb
from acmems.errors import DatabaseError

__all__ = ["LEASES_CHANNEL", "LEASE_SECONDS", "RENEW_EVERY", "DatabaseClaim", "lease_key", "take_lease"]

log = logging.getLogger("acmems.cluster")
LEASE_SECONDS = 15.0
RENEW_EVERY = 5.0
LEASES_CHANNEL = "acmems_leases"  # payload: the key of a lease given up


def lease_key(storage: str, verification: str, digest: str) -> str:
    """The lease of one CSR's certificate in one storage, validated one way (today's single-flight key)."""
    return f"{storage}/{verification}/{digest}"


_TAKE = """
INSERT INTO acmems_leases AS l (key, holder, fence, expires)
VALUES (%(key)s, %(holder)s, nextval('acmems_fences'), now() + %(ttl)s * interval '1 second')
ON CONFLICT (key) DO UPDATE
    SET holder = EXCLUDED.holder, fence = EXCLUDED.fence, expires = EXCLUDED.expires
    WHERE l.expires <= now()
RETURNING fence, order_url
"""


async def take_lease(db: ClusterDb, key: str) -> DatabaseClaim | None:
    """The lease of ``key`` for this instance, or None while another instance holds it."""
    async with db.transaction() as cursor:
        await cursor.execute(_TAKE, {"key": key, "holder": db.name, "ttl": LEASE_SECONDS})
        row = await cursor.fetchone()
    if row is None:
        return None
    claim = DatabaseClaim(db, key, int(row[0]), row[1])
    claim.keep_alive()
    if claim.saved_order is not None:
        log.info("took over the lease of %s (fence %d): resuming order %s", key, claim.fence, claim.saved_order)
    return claim


class DatabaseClaim:
    """A lease this instance holds (see :class:`acmems.storage.base.Claim`)."""

    def __init__(self, db: ClusterDb, key: str, fence: int, saved_order: str | None) -> None:
        self.db = db
        self.key = key
        self.fence: int | None = fence
        self.saved_order = saved_order
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None

    def keep_alive(self) -> None:
        """Renew the lease in the background until :meth:`release`."""
        self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                async with self.db.transaction() as cursor:
                    await cursor.execute(
                        "UPDATE acmems_leases SET expires = now() + %s * interval '1 second' "
                        "WHERE key = %s AND fence = %s AND expires > now()",
                        (LEASE_SECONDS, self.key, self.fence),
                    )
                    renewed = cursor.rowcount == 1
            except DatabaseError as exc:
                # Not renewed in time, it may lapse and another instance take the order over:
                # stop driving it before that can happen (the order goes on there, or at a retry).
                if time.monotonic() - renewed_at < LEASE_SECONDS - RENEW_EVERY:
                    continue
                self.lost = True
                log.warning(
                    "cannot renew the lease of %s (fence %s) for %.0f s (%s): this instance drives it no further",
                    self.key,
                    self.fence,
                    time.monotonic() - renewed_at,
                    exc.message,
                )
                return
            if not renewed:
                self.lost = True
                log.warning(
                    "lost the lease of %s (fence %s): another instance took it over; it drives it no further",
                    self.key,
                    self.fence,
                )
                return
            renewed_at = time.monotonic()

    async def save_order(self, url: str) -> None:
        """Save the order URL under this fence, or raise if the lease is lost (no challenge is answered)."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "UPDATE acmems_leases SET order_url = %s WHERE key = %s AND fence = %s AND expires > now()",
                (url, self.key, self.fence),
            )
            saved = cursor.rowcount == 1
        if not saved:
            self.lost = True
            raise DatabaseError("another acmems took this order over; post the CSR again to get its result")
        self.saved_order = url

    async def release(self) -> None:
        """Delete the lease (if still ours) and wake the instances waiting for it."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        try:
            async with self.db.transaction() as cursor:
                await cursor.execute("DELETE FROM acmems_leases WHERE key = %s AND fence = %s", (self.key, self.fence))
                await cursor.execute("SELECT pg_notify(%s, %s)", (LEASES_CHANNEL, self.key))
        except DatabaseError:
            log.warning("cannot give up the lease of %s; it lapses in %g s", self.key, LEASE_SECONDS)

    def abandon(self) -> None:
        """Stop renewing without deleting (this process stops): the lease lapses and another
        instance resumes the saved order."""
        if self._renewer is not None:
            self._renewer.cancel()
