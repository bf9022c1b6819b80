"""The rate limits seen before the CA says so (pure: events and time passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acmems.config import settings_from_sources
from acmems.core.rate_limits import (
    LETSENCRYPT,
    Event,
    Limit,
    RateLimits,
    names_key,
    parse_limit,
    refusal,
    registered_domains,
)
from acmems.errors import ConfigError

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
HOUR = 3600.0


def cert(ago: float, names: list[str]) -> Event:
    return Event(T - ago, "certificate", names_key(names), registered_domains(names))


def test_limits_are_written_count_slash_window() -> None:
    assert parse_limit("limit-duplicate-certificates", "5/7d") == Limit(
        "limit-duplicate-certificates", 5, timedelta(days=7)
    )
    assert parse_limit("k", "300/3h").window == timedelta(hours=3)
    assert parse_limit("k", "10/d").window == timedelta(days=1)
    assert str(parse_limit("k", "300/3h")) == "300/3h"
    for bad in ("5", "0/1h", "5/0h", "five/7d", "5/7w"):
        with pytest.raises(ValueError, match=r"COUNT/WINDOW|longer than 0"):
            parse_limit("k", bad)


def test_the_sixth_certificate_for_the_same_names_in_a_week_waits_for_the_first_to_leave() -> None:
    names = ["www.example.org", "example.org"]
    events = [cert(day * 86400.0 + 60, names) for day in range(5)]  # one a day, a new key each time
    refused = refusal(LETSENCRYPT, events, list(reversed(names)), NOW)
    assert refused is not None and refused.limit.key == "limit-duplicate-certificates"
    oldest = 4 * 86400.0 + 60
    assert refused.retry_after == int(7 * 86400 - oldest)
    assert "5 certificates for exactly these names in 7 days" in refused.message
    assert "Keep the key and CSR" in refused.message
    assert refusal(LETSENCRYPT, events[:4], names, NOW) is None
    assert refusal(LETSENCRYPT, events, ["other.example.org"], NOW) is None  # another set of names


def test_registered_domains_come_from_the_public_suffix_list() -> None:
    assert registered_domains(["a.b.example.co.uk", "*.example.org", "x.example.org"]) == (
        "example.co.uk",
        "example.org",
    )
    assert registered_domains(["192.0.2.7"]) == ("192.0.2.7",)
    limits = RateLimits(registered_domain=Limit("limit-registered-domain", 2, timedelta(days=7)))
    events = [cert(HOUR, ["a.example.org"]), cert(2 * HOUR, ["b.example.org"])]
    refused = refusal(limits, events, ["c.example.org"], NOW)
    assert refused is not None and "for example.org" in refused.message
    assert refused.retry_after == int(7 * 86400 - 2 * HOUR)


def test_new_orders_per_account() -> None:
    limits = RateLimits(new_orders=Limit("limit-new-orders", 2, timedelta(hours=3)))
    events = [Event(T - HOUR, "order", "a", ()), Event(T - 2 * HOUR, "order", "b", ())]
    refused = refusal(limits, events, ["x.example.org"], NOW)
    assert refused is not None and refused.retry_after == int(HOUR)
    assert "limit-new-orders = 2/3h" in refused.message
    assert refusal(limits, events[:1], ["x.example.org"], NOW) is None


def test_own_numbers_override_the_preset_per_account() -> None:
    settings = settings_from_sources(
        [("t.ini", "[account]\ndir = /x\nrate-limits = letsencrypt\nlimit-duplicate-certificates = 2/1h\n")]
    )
    limits = settings.account.rate_limits
    assert limits is not None
    assert limits.duplicate_certificates == Limit("limit-duplicate-certificates", 2, timedelta(hours=1))
    assert limits.new_orders == LETSENCRYPT.new_orders
    alone = settings_from_sources([("t.ini", "[account]\ndir = /x\nlimit-new-orders = 10/1h\n")]).account
    assert alone.rate_limits == RateLimits(new_orders=Limit("limit-new-orders", 10, timedelta(hours=1)))
    assert settings_from_sources([("t.ini", "[account]\ndir = /x\n")]).account.rate_limits is None
    with pytest.raises(ConfigError, match="use letsencrypt or none"):
        settings_from_sources([("t.ini", "[account]\ndir = /x\nrate-limits = zerossl\n")])
    with pytest.raises(ConfigError, match=r"limit-registered-domain: '50' is not a limit"):
        settings_from_sources([("t.ini", "[account]\ndir = /x\nlimit-registered-domain = 50\n")])
