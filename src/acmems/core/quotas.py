"""Per-block quotas (``[auth] limit-new-orders``, ``limit-pending``): one team's clients cannot take
the account's order slots and new-order budget from the others. Only new orders a client asks for
count; renewals and cache hits never do.

Pure: the decision from the block's recent order start times and its running orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from acmems.core.rate_limits import Limit

__all__ = ["PENDING_RETRY", "BlockQuota", "QuotaRefusal", "quota_refusal"]

#: Retry-After when a block's running orders are at limit-pending: an order takes seconds to minutes.
PENDING_RETRY = 30


@dataclass(frozen=True, slots=True)
class BlockQuota:
    """The quotas of one auth block (None: not limited)."""

    block: str
    new_orders: Limit | None = None
    pending: int | None = None

    @property
    def limited(self) -> bool:
        return self.new_orders is not None or self.pending is not None


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """Over a quota: the key that says so, the line for the client, and when to try again."""

    key: str
    message: str
    retry_after: int


def quota_refusal(quota: BlockQuota, started: Sequence[float], running: int, now: float) -> QuotaRefusal | None:
    """Whether a new order of ``quota.block`` may start now, given the start times (Unix) of its
    earlier new orders and how many of its orders run now; None: it may."""
    if quota.pending is not None and running >= quota.pending:
        return QuotaRefusal(
            "limit-pending",
            f"auth block {quota.block!r}: limit-pending = {quota.pending} reached ({running} orders of this "
            "block running); post again when one has finished",
            PENDING_RETRY,
        )
    limit = quota.new_orders
    if limit is not None:
        window = limit.window.total_seconds()
        recent = sorted(t for t in started if t > now - window)
        if len(recent) >= limit.count:
            frees = recent[len(recent) - limit.count] + window  # when enough of them have left the window
            retry = max(1, math.ceil(frees - now))
            return QuotaRefusal(
                "limit-new-orders",
                f"auth block {quota.block!r}: limit-new-orders = {limit} reached ({len(recent)} new orders in "
                f"the window); the next is possible in {retry} s",
                retry,
            )
    return None
