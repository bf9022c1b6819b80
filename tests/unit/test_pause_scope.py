"""What a CA's rateLimited answer pauses (acmems.core.pause_scope), and the pauses kept in memory."""

from __future__ import annotations

import asyncio

import pytest

from acmems.core.pause_scope import ACCOUNT, PauseScope, Scope, classify_rate_limit, scopes_of
from acmems.errors import CaError
from acmems.storage.pauses import MemoryPauses

NAMES = ["www.team-a.example.com", "team-a.example.com"]
TAIL = "in the last 168h0m0s, retry after 2026-12-06 09:13:16 UTC: see https://letsencrypt.org/docs/rate-limits/"


@pytest.mark.parametrize(
    ("detail", "scope"),
    [
        (
            "too many new orders (300) from this account in the last 3h0m0s, retry after 2026-12-05 20:00:00 UTC",
            ACCOUNT,
        ),
        (
            f"too many certificates (5) already issued for this exact set of identifiers {TAIL}",
            PauseScope(Scope.NAMES, "team-a.example.com,www.team-a.example.com"),
        ),
        (
            f'too many certificates (50) already issued for "example.com" {TAIL}',
            PauseScope(Scope.DOMAIN, "example.com"),
        ),
        (f'too many certificates (50) already issued for "192.0.2.7/32" {TAIL}', PauseScope(Scope.DOMAIN, "192.0.2.7")),
        (
            'too many failed authorizations (5) for "WWW.team-a.example.com" in the last 1h0m0s, retry after ...',
            PauseScope(Scope.NAME, "www.team-a.example.com"),
        ),
        # as acmems words the CA's answer around it
        (
            "the CA rate-limited this request (rateLimited: too many new orders (300) from this account in the last 3h)",
            ACCOUNT,
        ),
        # an answer no rule knows: the order's exact set of names, certain to hold what was refused
        ("Slow down, please", PauseScope(Scope.NAMES, "team-a.example.com,www.team-a.example.com")),
        ("", PauseScope(Scope.NAMES, "team-a.example.com,www.team-a.example.com")),
    ],
)
def test_the_ca_s_words_decide_what_is_paused(detail: str, scope: PauseScope) -> None:
    assert classify_rate_limit(detail, NAMES) == scope


def test_an_order_falls_under_its_account_its_set_its_registered_domains_and_its_names() -> None:
    scopes = scopes_of(["*.dev.example.com", "api.example.org", "2001:db8::5"])
    assert ACCOUNT in scopes
    assert PauseScope(Scope.NAMES, "*.dev.example.com,2001:db8::5,api.example.org") in scopes
    for domain in ("example.com", "example.org", "2001:db8::5", "2001:db8::/64"):
        assert PauseScope(Scope.DOMAIN, domain) in scopes
    for name in ("*.dev.example.com", "dev.example.com", "api.example.org"):  # a wildcard's base name too
        assert PauseScope(Scope.NAME, name) in scopes


def test_a_pause_holds_only_the_orders_in_its_scope_and_says_what_and_until_when() -> None:
    pauses = MemoryPauses()
    other = ["www.team-b.example.org"]

    async def scenario() -> None:
        await pauses.hold("https://ca", PauseScope(Scope.NAME, "www.team-a.example.com"), 3600, "five failures")
        with pytest.raises(CaError) as info:
            await pauses.check("https://ca", scopes_of(NAMES))
        assert info.value.status == 429 and info.value.held and 3590 <= (info.value.retry_after or 0) <= 3600
        assert "the name www.team-a.example.com" in info.value.message and " UTC (" in info.value.message
        await pauses.check("https://ca", scopes_of(other))  # another team: not held
        await pauses.check("https://other-ca", scopes_of(NAMES))  # another account: not held
        await pauses.hold("https://ca", PauseScope(Scope.NAME, "www.team-a.example.com"), 60, "shorter")
        with pytest.raises(CaError, match="five failures"):  # the longer pause stays
            await pauses.check("https://ca", scopes_of(NAMES))
        await pauses.hold("https://ca", ACCOUNT, 1, "account")
        with pytest.raises(CaError, match="every order of this account"):
            await pauses.check("https://ca", scopes_of(other))

    asyncio.run(scenario())
