"""Which certificates need an operator: overdue, expiring, not picked up. Pure: ``now`` is passed in.

Every threshold is a share of the certificate's lifetime, so one configuration fits 6-day and
90-day certificates alike (:class:`Thresholds`). Only certificates that clients still ask for are
watched (asked for within twice their lifetime, as the renewer decides): one nobody wants any more
is left to expire on purpose. A condition is reported once when it begins and reminded every
``remind_every`` while it lasts; :func:`watch` returns the events and the new marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from acmems.core.event_kinds import EventKind
from acmems.core.thresholds import Thresholds
from acmems.notify.events import Event, make_event, rfc3339
from acmems.storage.base import CachedCertificate

__all__ = ["Fetch", "Mark", "Watched", "watch"]


@dataclass(frozen=True, slots=True)
class Fetch:
    """A client's last fetch of one CSR's certificate: which serial, when (Unix time)."""

    serial: int
    when: float


@dataclass(frozen=True, slots=True)
class Watched:
    """One stored certificate as the watch sees it."""

    storage: str
    block: str
    entry: CachedCertificate
    renewed: float | None = None  # when this serial replaced an earlier one (Unix time), if it did
    fetches: Mapping[str, Fetch] = field(default_factory=dict)  # by client address


@dataclass(frozen=True, slots=True)
class Mark:
    """A condition in force: when it began and when it was last sent."""

    began: float
    sent: float


def _wanted(entry: CachedCertificate, now: datetime) -> bool:
    lifetime = entry.not_after - entry.not_before
    return entry.last_requested >= (now - 2 * lifetime).timestamp()


def _conditions(
    item: Watched, now: datetime, thresholds: Thresholds
) -> Iterable[tuple[str, EventKind, dict[str, object]]]:
    """(key, kind, fields) of every condition of ``item`` in force at ``now``."""
    entry = item.entry
    lifetime = entry.not_after - entry.not_before
    serial = format(entry.serial, "x")
    where = f"{item.storage}/{entry.digest}"
    about: dict[str, object] = {
        "not_after": rfc3339(entry.not_after),
        "renewal_point": rfc3339(entry.renew_at),
        "serial": serial,
        "profile": entry.profile,
    }
    if _wanted(entry, now):
        if now >= entry.renew_at + thresholds.overdue_grace.of(lifetime):
            yield f"{EventKind.OVERDUE}/{where}", EventKind.OVERDUE, about
        if now >= entry.not_after - thresholds.expiring_left.of(lifetime):
            yield f"{EventKind.EXPIRING}/{where}", EventKind.EXPIRING, about
    grace = thresholds.pickup_grace.of(lifetime).total_seconds()
    if item.renewed is not None and now.timestamp() >= item.renewed + grace:
        for client, fetch in sorted(item.fetches.items()):
            if fetch.serial != entry.serial and fetch.when < item.renewed:
                yield (
                    f"{EventKind.NOT_PICKED_UP}/{where}/{client}",
                    EventKind.NOT_PICKED_UP,
                    {**about, "client": client, "renewed": rfc3339(item.renewed), "fetched": rfc3339(fetch.when)},
                )


def watch(
    items: Iterable[Watched], now: datetime, thresholds: Thresholds, marks: Mapping[str, Mark]
) -> tuple[list[Event], dict[str, Mark]]:
    """The events to send at ``now`` and the marks of the conditions in force afterwards (a condition
    that ended is dropped: if it comes back, it is new)."""
    events: list[Event] = []
    kept: dict[str, Mark] = {}
    stamp = now.timestamp()
    for item in items:
        lifetime = item.entry.not_after - item.entry.not_before
        remind = thresholds.remind_every.of(lifetime).total_seconds()
        for key, kind, fields in _conditions(item, now, thresholds):
            mark = marks.get(key)
            if mark is None:
                kept[key] = Mark(stamp, stamp)
                events.append(make_event(kind, item.entry.names, item.block, now, {**fields, "reminder": False}))
            elif stamp - mark.sent >= remind:
                kept[key] = Mark(mark.began, stamp)
                extra = {**fields, "reminder": True, "since": rfc3339(mark.began)}
                events.append(make_event(kind, item.entry.names, item.block, now, extra))
            else:
                kept[key] = mark
    return events, kept
