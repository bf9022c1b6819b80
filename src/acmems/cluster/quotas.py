"""Per-block quotas counted by the whole cluster (``acmems_block_orders``): a row per new order of a
block, ``running`` while it runs. A running order counts only while its instance is alive, so one
that died frees its slot within ``ALIVE_SECONDS``. Taking a slot locks the block for the
transaction (an advisory lock), so two instances cannot both take the last one."""

from __future__ import annotations

from acmems.cluster.database import ClusterDb
from acmems.core.quotas import BlockQuota, quota_refusal
from acmems.storage.quotas import QuotaExceeded, QuotaSlot

__all__ = ["DatabaseQuotas"]


class _DatabaseSlot:
    def __init__(self, db: ClusterDb, row: int) -> None:
        self.db = db
        self.row = row

    async def finish(self) -> None:
        async with self.db.transaction() as cursor:
            await cursor.execute("UPDATE acmems_block_orders SET running = false WHERE id = %s", (self.row,))


class DatabaseQuotas:
    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def take(self, quota: BlockQuota) -> QuotaSlot:
        window = quota.new_orders.window.total_seconds() if quota.new_orders is not None else 0.0
        async with self.db.transaction() as cursor:
            await cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"acmems-block:{quota.block}",))
            await cursor.execute(
                "SELECT extract(epoch FROM now()), "
                "coalesce(array_agg(extract(epoch FROM o.at)::float8) "
                "  FILTER (WHERE o.counted AND o.at > now() - %(window)s * interval '1 second'), '{}'), "
                "count(*) FILTER (WHERE o.running AND EXISTS (SELECT 1 FROM acmems_instances i "
                "  WHERE i.instance = o.holder AND i.alive_until > now())) "
                "FROM acmems_block_orders o WHERE o.block = %(block)s",
                {"block": quota.block, "window": window},
            )
            row = await cursor.fetchone()
            assert row is not None
            refused = quota_refusal(quota, list(row[1]), int(row[2]), float(row[0]))
            if refused is not None:
                raise QuotaExceeded(refused)
            await cursor.execute(
                "INSERT INTO acmems_block_orders (block, holder, counted, running) VALUES (%s, %s, %s, true) "
                "RETURNING id",
                (quota.block, self.db.instance, quota.new_orders is not None),
            )
            inserted = await cursor.fetchone()
            assert inserted is not None
        return _DatabaseSlot(self.db, int(inserted[0]))
