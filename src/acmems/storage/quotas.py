"""Where the per-block quotas are counted (:mod:`acmems.core.quotas`): in memory for one acmems
(:class:`MemoryQuotas`), in the cluster database for a cluster
(:class:`acmems.cluster.quotas.DatabaseQuotas`), so that every instance counts the same orders."""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from acmems.core.quotas import BlockQuota, QuotaRefusal, quota_refusal
from acmems.errors import AcmemsError, Kind

__all__ = ["BlockQuotas", "MemoryQuotas", "QuotaExceeded", "QuotaSlot"]


class QuotaExceeded(AcmemsError):
    """429: a block's quota; ``limit`` is the key that refused."""

    kind = Kind.RATE_LIMITED

    def __init__(self, refusal: QuotaRefusal) -> None:
        super().__init__(refusal.message, kind=Kind.RATE_LIMITED, retry_after=refusal.retry_after)
        self.limit = refusal.key


class QuotaSlot(Protocol):
    """A new order of a block, counted while it runs."""

    async def finish(self) -> None:
        """The order is over (issued or failed): it no longer counts as running."""
        ...


class BlockQuotas(Protocol):
    """Per auth block."""

    async def take(self, quota: BlockQuota) -> QuotaSlot:
        """Count a new order of ``quota.block``, or raise :class:`QuotaExceeded` (429). A cluster
        raises :class:`acmems.errors.DatabaseError` when its database does not answer."""
        ...


class _MemorySlot:
    def __init__(self, quotas: MemoryQuotas, block: str) -> None:
        self.quotas = quotas
        self.block = block
        self.done = False

    async def finish(self) -> None:
        if not self.done:
            self.done = True
            self.quotas.running[self.block] -= 1


class MemoryQuotas:
    """One acmems: the start times of each block's new orders within its window, and how many run.
    (A restart forgets them: the CA's own limits still apply.)"""

    def __init__(self) -> None:
        self.started: dict[str, deque[float]] = {}
        self.running: dict[str, int] = {}

    async def take(self, quota: BlockQuota) -> QuotaSlot:
        now = time.time()
        started = self.started.setdefault(quota.block, deque())
        if quota.new_orders is not None:
            while started and started[0] <= now - quota.new_orders.window.total_seconds():
                started.popleft()
        refused = quota_refusal(quota, started, self.running.get(quota.block, 0), now)
        if refused is not None:
            raise QuotaExceeded(refused)
        if quota.new_orders is not None:
            started.append(now)
        self.running[quota.block] = self.running.get(quota.block, 0) + 1
        return _MemorySlot(self, quota.block)
