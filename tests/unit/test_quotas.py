"""Per-block quotas (acmems.core.quotas) and their count in memory (acmems.storage.quotas)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from acmems.core.quotas import PENDING_RETRY, BlockQuota, quota_refusal
from acmems.core.rate_limits import Limit
from acmems.storage.quotas import MemoryQuotas, QuotaExceeded

HOURLY = Limit("limit-new-orders", 3, timedelta(hours=1))


def test_new_orders_in_the_window_and_when_the_next_is_possible() -> None:
    quota = BlockQuota("team-a", new_orders=HOURLY)
    now = 10_000.0
    assert quota_refusal(quota, [now - 4000, now - 100, now - 50], 0, now) is None  # one left the window
    refused = quota_refusal(quota, [now - 3000, now - 100, now - 50], 0, now)
    assert refused is not None and refused.key == "limit-new-orders"
    assert refused.retry_after == 600  # when the one of 3000 s ago leaves the hour
    assert "auth block 'team-a': limit-new-orders = 3/1h reached" in refused.message


def test_running_orders_and_pending() -> None:
    quota = BlockQuota("team-a", pending=2)
    assert quota_refusal(quota, [], 1, 0.0) is None
    refused = quota_refusal(quota, [], 2, 0.0)
    assert refused is not None and refused.key == "limit-pending" and refused.retry_after == PENDING_RETRY
    assert "limit-pending = 2 reached (2 orders of this block running)" in refused.message


def test_memory_counts_per_block_and_frees_a_slot_when_an_order_finishes() -> None:
    quotas = MemoryQuotas()

    async def scenario() -> None:
        first = await quotas.take(BlockQuota("team-a", new_orders=HOURLY, pending=1))
        with pytest.raises(QuotaExceeded, match="limit-pending") as info:
            await quotas.take(BlockQuota("team-a", new_orders=HOURLY, pending=1))
        assert info.value.status == 429 and info.value.retry_after == PENDING_RETRY
        await quotas.take(BlockQuota("team-b", pending=1))  # another block: its own count
        await first.finish()
        await first.finish()  # once only
        second = await quotas.take(BlockQuota("team-a", new_orders=HOURLY, pending=1))
        await second.finish()
        third = await quotas.take(BlockQuota("team-a", new_orders=HOURLY, pending=1))
        await third.finish()
        with pytest.raises(QuotaExceeded, match="limit-new-orders") as info:
            await quotas.take(BlockQuota("team-a", new_orders=HOURLY, pending=1))
        assert info.value.retry_after is not None and 3590 <= info.value.retry_after <= 3600

    asyncio.run(scenario())


def test_the_limit_keys_of_an_auth_block_are_read_shown_and_checked() -> None:
    from acmems.config import settings_from_sources
    from acmems.config.describe import describe_settings
    from acmems.errors import ConfigError

    text = (
        "[account]\ndir = /a\n"
        '[auth "team-a"]\ndomain = *.example.org\nall = yes\nlimit-new-orders = 20/1h\nlimit-pending = 4\n'
        '[auth "team-b"]\ndomain = *.example.com\nall = yes\n'
    )
    settings = settings_from_sources([("t.ini", text)])
    team_a, team_b = settings.auth_blocks
    assert team_a.limit_new_orders == HOURLY.__class__("limit-new-orders", 20, timedelta(hours=1))
    assert team_a.limit_pending == 4 and team_b.limit_new_orders is None and team_b.limit_pending is None
    shown = describe_settings(settings)
    assert "limit-new-orders = 20/1h, limit-pending = 4" in shown and "limit-new-orders = -, limit-pending = -" in shown
    for good, bad, message in (
        ("limit-pending = 4", "limit-pending = 0", "larger than 0"),
        ("limit-new-orders = 20/1h", "limit-new-orders = 5/40d", "at most 31d"),
    ):
        with pytest.raises(ConfigError, match=message):
            settings_from_sources([("t.ini", text.replace(good, bad))])
