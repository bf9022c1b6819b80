"""The DNS-01 cleanup journal of a cluster (``acmems_dns_pending``): every TXT value an instance adds
is listed with that instance's id before it is sent, and taken off once deleted. Values whose
instance is gone (it has not said it is alive for ``ALIVE_SECONDS`` and then ``ADOPT_AFTER_LAPSE``
more, see :mod:`acmems.cluster.instances`) are adopted by another live instance, never by their
own, which deletes them; a value that a live instance also lists (it resumed that order) is
only taken off the list, not deleted from the zone."""

from __future__ import annotations

from acmems.cluster.database import ClusterDb
from acmems.cluster.instances import ADOPT_AFTER_LAPSE
from acmems.storage.dns_journal import DnsRecord

__all__ = ["DatabaseJournal"]

_ADOPT = """
WITH orphans AS (
    SELECT p.id FROM acmems_dns_pending p
    WHERE p.instance <> %(instance)s
      AND NOT EXISTS (
        SELECT 1 FROM acmems_instances i
        WHERE i.instance = p.instance AND i.alive_until > now() - %(lapse)s * interval '1 second'
      )
    FOR UPDATE SKIP LOCKED
)
UPDATE acmems_dns_pending p SET instance = %(instance)s, holder = %(holder)s
FROM orphans WHERE p.id = orphans.id
RETURNING p.id, p.server, p.port, p.zone, p.name, p.value
"""
_STILL_USED = """
SELECT 1 FROM acmems_dns_pending p JOIN acmems_instances i ON i.instance = p.instance
WHERE p.server = %s AND p.port = %s AND p.zone = %s AND p.name = %s AND p.value = %s
  AND p.id <> %s AND i.alive_until > now()
"""


class DatabaseJournal:
    """:class:`acmems.challenges.dns01_update.DnsJournal` in the cluster database."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def add(self, record: DnsRecord) -> None:
        """Listed (committed) before the value is sent. Raises :class:`DatabaseError`."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_dns_pending (server, port, zone, name, value, holder, instance) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record.server, record.port, record.zone, record.name, record.value, self.db.name, self.db.instance),
            )

    async def remove(self, record: DnsRecord) -> None:
        """One listing of this value by this instance taken off."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "DELETE FROM acmems_dns_pending WHERE id = (SELECT id FROM acmems_dns_pending "
                "WHERE server = %s AND port = %s AND zone = %s AND name = %s AND value = %s AND instance = %s "
                "LIMIT 1)",
                (record.server, record.port, record.zone, record.name, record.value, self.db.instance),
            )

    async def records(self) -> list[DnsRecord]:
        """The values of instances that are gone, adopted by this one (to be deleted now)."""
        adopted = []
        async with self.db.transaction() as cursor:
            await cursor.execute(
                _ADOPT, {"instance": self.db.instance, "holder": self.db.name, "lapse": ADOPT_AFTER_LAPSE}
            )
            rows = await cursor.fetchall()
            for row_id, server, port, zone, name, value in rows:
                await cursor.execute(_STILL_USED, (server, port, zone, name, value, row_id))
                if await cursor.fetchone() is not None:
                    # A live instance listed it again (it resumed the order): only the listing goes.
                    await cursor.execute("DELETE FROM acmems_dns_pending WHERE id = %s", (row_id,))
                    continue
                adopted.append(DnsRecord(server, port, zone, name, value))
        return adopted
