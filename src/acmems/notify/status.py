"""The state of each stored certificate, for ``GET /status`` and ``acmems list``. Pure.

States, problems first: ``expired``, ``overdue`` (past its renewal point by ``[notify]
overdue-grace`` and still asked for), ``failed`` (its last order failed), ``renewing`` (an order
runs now), ``renewal due`` (past its renewal point), ``ok``.

:func:`status_rows` must stay fast with 100,000 certificates (the page is rendered on the event
loop): the certificates not yet due (most of them) go to ``ok`` as one slice of the store's sorted
list, and a full :class:`StatusRow` is built only for the rows a page shows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from acmems.core.thresholds import Thresholds
from acmems.notify.pickups import Track
from acmems.storage.base import CachedCertificate

__all__ = ["STATES", "Segment", "StatusList", "StatusRow", "certificate_state", "status_rows"]

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


Segment = tuple[str, list[CachedCertificate]]  # one store's certificates in one state, in order


class StatusList:
    """Every certificate by state, problems first; within a state by store, soonest renewal first.
    Each state holds segments (a store and a list of its certificates), not one tuple per
    certificate: 100,000 small objects per request would cost more than everything else."""

    def __init__(self, buckets: Mapping[str, list[Segment]], tracks: Mapping[tuple[str, str], Track]) -> None:
        self.buckets = buckets
        self.tracks = tracks
        self.counts = {state: sum(len(part) for _, part in buckets.get(state, ())) for state in STATES}

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
            for storage, part in self.buckets.get(s, ()):
                if stop is not None and offset >= stop:
                    return picked
                first = max(start - offset, 0)
                last = len(part) if stop is None else max(0, min(stop - offset, len(part)))
                picked += [(s, storage, entry) for entry in part[first:last]]
                offset += len(part)
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
    stores: Iterable[tuple[str, Sequence[CachedCertificate]]],
    now: datetime,
    thresholds: Thresholds,
    running: set[tuple[str, str]],
    tracks: Mapping[tuple[str, str], Track],
) -> StatusList:
    """Every certificate by its state. Each store gives its entries soonest renewal first, so those
    not yet due are one tail of the list (found by bisection): it goes to ``ok`` as one slice, but
    for the few that are renewing or whose last order failed."""
    buckets: dict[str, list[Segment]] = {state: [] for state in STATES}
    special = set(running) | {key for key, track in tracks.items() if track.error is not None}

    def put(state: str, storage: str, entry: CachedCertificate) -> None:
        bucket = buckets[state]
        if not bucket or bucket[-1][0] != storage:
            bucket.append((storage, []))
        bucket[-1][1].append(entry)

    for storage, entries in stores:
        due_end = bisect.bisect_right(entries, now, key=_renew_at)
        exceptions = {digest for where, digest in special if where == storage}
        for entry in entries[:due_end]:
            key = (storage, entry.digest)
            track = tracks.get(key)
            put(
                certificate_state(entry, now, thresholds, key in running, track.error if track else None),
                storage,
                entry,
            )
        if not exceptions:
            buckets["ok"].append((storage, list(entries[due_end:])))
            continue
        for entry in entries[due_end:]:
            if entry.digest in exceptions:
                track = tracks.get((storage, entry.digest))
                error = track.error if track else None
                put(
                    certificate_state(entry, now, thresholds, (storage, entry.digest) in running, error), storage, entry
                )
            else:
                put("ok", storage, entry)
    return StatusList(buckets, tracks)


def _renew_at(entry: CachedCertificate) -> datetime:
    return entry.renew_at
