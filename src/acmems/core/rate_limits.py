"""The CA's rate limits, seen before the CA says so (``[account] rate-limits``, ``limit-*``). Pure:
the events and ``now`` are passed in; :mod:`acmems.storage.rate_log` keeps the events.

Three limits, as Let's Encrypt counts them, per account: new orders per window
(``limit-new-orders``), certificates per exact set of names (``limit-duplicate-certificates``) and
certificates per registered domain (``limit-registered-domain``, the public suffix list's
registrable domain). Renewals the CA exempts (ARI, with ``replaces``) are neither checked nor counted.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "LETSENCRYPT",
    "Event",
    "Limit",
    "RateLimits",
    "Refusal",
    "names_key",
    "parse_limit",
    "refusal",
    "registered_domains",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LIMIT_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` events within ``window``; ``key`` is the configuration key that sets it."""

    key: str
    count: int
    window: timedelta

    def __str__(self) -> str:
        seconds = int(self.window.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{self.count}/{seconds // size}{unit}"
        return f"{self.count}/{seconds}s"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits of one account (None: not checked)."""

    new_orders: Limit | None = None
    duplicate_certificates: Limit | None = None
    registered_domain: Limit | None = None


#: Let's Encrypt's published numbers.
LETSENCRYPT = RateLimits(
    Limit("limit-new-orders", 300, timedelta(hours=3)),
    Limit("limit-duplicate-certificates", 5, timedelta(days=7)),
    Limit("limit-registered-domain", 50, timedelta(days=7)),
)


def parse_limit(key: str, value: str) -> Limit:
    """``5/7d`` -> 5 per 7 days (units s, m, h, d; ``300/3h``; ``10/d`` is one day).

    Raises:
        ValueError: naming what would be valid.
    """
    match = _LIMIT_RE.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{value!r} is not a limit; write COUNT/WINDOW, e.g. 5/7d, 300/3h (units s, m, h, d)")
    amount = int(match.group(2) or "1")
    if amount < 1:
        raise ValueError(f"{value!r}: the window must be longer than 0")
    return Limit(key, int(match.group(1)), timedelta(seconds=amount * _UNITS[match.group(3)]))


@dataclass(frozen=True, slots=True)
class Event:
    """Something the CA counts: a new order, or a certificate issued (for a set of names)."""

    at: float  # Unix time
    kind: str  # "order" or "certificate"
    names: str  # names_key of the certificate's identifiers
    domains: tuple[str, ...]  # its registered domains


@dataclass(frozen=True, slots=True)
class Refusal:
    """An order the CA would refuse: which limit, when it frees up, and one line for the client."""

    limit: Limit
    retry_after: int
    message: str


def names_key(names: Iterable[str]) -> str:
    """The exact set of names, as the CA compares it (order and case do not matter)."""
    return ",".join(sorted({n.lower() for n in names}))


@functools.lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    # Loaded at the first check (the list's parse costs tens of milliseconds; most set-ups never ask).
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registered_domains(names: Iterable[str]) -> tuple[str, ...]:
    """The registrable domains (public suffix list) of ``names``; an IP address counts as itself."""
    psl = _suffixes()
    found: dict[str, None] = {}
    for name in names:
        bare = name.lower().removeprefix("*.")
        try:
            ipaddress.ip_address(bare)
            found[bare] = None
            continue
        except ValueError:
            pass
        private = psl.privatesuffix(bare)
        found[private if isinstance(private, str) else bare] = None
    return tuple(found)


def refusal(
    limits: RateLimits, events: Sequence[Event], names: Sequence[str], now: datetime | None = None
) -> Refusal | None:
    """Whether a new order for ``names`` would go over a limit, given the account's ``events``."""
    moment = (now or datetime.now(UTC)).timestamp()
    key = names_key(names)
    if limits.new_orders is not None:
        found = _over(limits.new_orders, [e.at for e in events if e.kind == "order"], moment)
        if found is not None:
            return Refusal(
                limits.new_orders,
                found,
                f"rate limit: {limits.new_orders.count} new orders per {_window(limits.new_orders)} for this "
                f"account ({limits.new_orders.key} = {limits.new_orders}) reached; it frees up in {_human(found)}",
            )
    certificates = [e for e in events if e.kind == "certificate"]
    if limits.duplicate_certificates is not None:
        limit = limits.duplicate_certificates
        found = _over(limit, [e.at for e in certificates if e.names == key], moment)
        if found is not None:
            return Refusal(
                limit,
                found,
                f"rate limit: {limit.count} certificates for exactly these names in {_window(limit)} "
                f"({limit.key} = {limit}) already issued; the next is possible in {_human(found)}. Keep the key "
                "and CSR and post the same CSR again: the cache then answers without a new certificate",
            )
    if limits.registered_domain is not None:
        limit = limits.registered_domain
        for domain in registered_domains(names):
            found = _over(limit, [e.at for e in certificates if domain in e.domains], moment)
            if found is not None:
                return Refusal(
                    limit,
                    found,
                    f"rate limit: {limit.count} certificates for {domain} in {_window(limit)} ({limit.key} = "
                    f"{limit}) already issued; it frees up in {_human(found)}",
                )
    return None


def _over(limit: Limit, times: Iterable[float], now: float) -> int | None:
    """Seconds until the limit frees up, or None if one more is allowed now."""
    window = limit.window.total_seconds()
    recent = sorted(t for t in times if now - t < window)
    if len(recent) < limit.count:
        return None
    # The oldest of the last `count` leaves the window first: then one more fits.
    return max(1, math.ceil(recent[-limit.count] + window - now))


def _window(limit: Limit) -> str:
    seconds = int(limit.window.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit[:-1] if count == 1 else unit}"
    return f"{seconds} seconds"


def _human(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
