"""When a cached certificate is still good to serve. Pure: ``now`` is always passed in."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["renewal_time"]


def renewal_time(not_before: datetime, not_after: datetime, renew_within: timedelta) -> datetime:
    """The moment from which a certificate is renewed instead of served from the cache.

    ``renew_within`` before expiry, but never less than a third of the lifetime before it, so that
    short-lived certificates (6-day profiles) are cached for two thirds of their life rather than
    not at all.
    """
    lifetime = not_after - not_before
    return not_after - min(renew_within, lifetime / 3)
