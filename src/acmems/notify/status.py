"""The state of each stored certificate, for ``GET /status`` and ``acmems list``. Pure.

States, problems first: ``expired``, ``overdue`` (past its renewal point by ``[notify]
overdue-grace`` and still asked for), ``failed`` (its last order failed), ``renewing`` (an order
runs now), ``renewal due`` (past its renewal point), ``ok``.

:func:`status_rows` must stay fast with 100,000 certificates (the page is rendered on the event
loop): it puts each certificate into its state's list with the cheapest test first (most are not
yet due), and builds a full :class:`StatusRow` only for the rows a page shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from acmems.notify.pickups import Track
from acmems.notify.thresholds import Thresholds
from acmems.storage.base import CachedCertificate

__all__ = ["STATES", "StatusList", "StatusRow", "certificate_state", "status_rows"]

STATES = ("expired", "overdue", "failed", "renewing", "renewal due", "ok")


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One certificate on the status page."""

    storage: str
    entry: CachedCertificate
    state: str
    last_fetch: tuple[float, str] | None = None  # when (Unix time), by which address
    error: str | None = None


def certificate_state(
    entry: CachedCertificate, now: datetime, thresholds: Thresholds, running: bool, error: str | None
) -> str:
    """One of :data:`STATES`."""
    if now < entry.renew_at:  # most certificates: neither expired, overdue nor due
        return "renewing" if running else "failed" if error is not None else "ok"
    if now >= entry.not_after:
        return "expired"
    lifetime = entry.not_after - entry.not_before
    wanted = entry.last_requested >= (now - 2 * lifetime).timestamp()
    if wanted and now >= entry.renew_at + thresholds.overdue_grace.of(lifetime):
        return "overdue"
    if running:
        return "renewing"
    if error is not None:
        return "failed"
    return "renewal due"


class StatusList:
    """Every certificate by state, problems first, soonest renewal first within a state."""

    def __init__(
        self, buckets: Mapping[str, list[tuple[str, CachedCertificate]]], tracks: Mapping[tuple[str, str], Track]
    ):
        self.buckets = buckets
        self.tracks = tracks
        self.counts = {state: len(buckets.get(state, ())) for state in STATES}

    def __len__(self) -> int:
        return sum(self.counts.values())

    def total(self, state: str | None = None) -> int:
        """How many certificates, or how many in ``state``."""
        return len(self) if state is None else self.counts.get(state, 0)

    def select(
        self, state: str | None = None, start: int = 0, stop: int | None = None
    ) -> list[tuple[str, str, CachedCertificate]]:
        """(state, storage, entry) of the certificates ``start`` to ``stop`` (in the page's order),
        of all or of those in ``state``; only that part is copied."""
        picked: list[tuple[str, str, CachedCertificate]] = []
        offset = 0
        for s in STATES:
            if state not in (None, s):
                continue
            if stop is not None and offset >= stop:
                break
            bucket = self.buckets.get(s, [])
            first = max(start - offset, 0)
            last = len(bucket) if stop is None else max(0, min(stop - offset, len(bucket)))
            picked += [(s, storage, entry) for storage, entry in bucket[first:last]]
            offset += len(bucket)
        return picked

    def row(self, state: str, storage: str, entry: CachedCertificate) -> StatusRow:
        track = self.tracks.get((storage, entry.digest))
        if track is None:
            return StatusRow(storage, entry, state)
        last = None
        if track.fetches:
            client = max(track.fetches, key=lambda c: track.fetches[c].when)
            last = (track.fetches[client].when, client)
        return StatusRow(storage, entry, state, last, track.error)

    def rows(self, state: str | None = None) -> list[StatusRow]:
        """Every row (for tests and small lists: the page builds only the rows it shows)."""
        return [self.row(s, storage, entry) for s, storage, entry in self.select(state)]


def status_rows(
    stores: Iterable[tuple[str, Iterable[CachedCertificate]]],
    now: datetime,
    thresholds: Thresholds,
    running: set[tuple[str, str]],
    tracks: Mapping[tuple[str, str], Track],
) -> StatusList:
    """Every certificate by its state (the stores give their entries soonest renewal first)."""
    buckets: dict[str, list[tuple[str, CachedCertificate]]] = {state: [] for state in STATES}
    ok = buckets["ok"]
    several = False
    for number, (storage, entries) in enumerate(stores):
        several = several or number > 0
        for entry in entries:
            key = (storage, entry.digest)
            if now < entry.renew_at and key not in running:
                track = tracks.get(key)
                if track is None or track.error is None:
                    ok.append((storage, entry))  # the common case, without the full test
                    continue
            track = tracks.get(key)
            state = certificate_state(entry, now, thresholds, key in running, track.error if track else None)
            buckets[state].append((storage, entry))
    if several:  # each store's entries come in order; together they need sorting
        for bucket in buckets.values():
            bucket.sort(key=lambda item: item[1].renew_at)
    return StatusList(buckets, tracks)
