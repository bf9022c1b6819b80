"""The state of each stored certificate, for ``GET /status`` and ``acmems list``. Pure.

States, problems first: ``expired``, ``overdue`` (past its renewal point by ``[notify]
overdue-grace`` and still asked for), ``failed`` (its last order failed), ``renewing`` (an order
runs now), ``renewal due`` (past its renewal point), ``ok``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from acmems.notify.pickups import Track
from acmems.notify.thresholds import Thresholds
from acmems.storage.base import CachedCertificate

__all__ = ["STATES", "StatusRow", "certificate_state", "status_rows"]

STATES = ("expired", "overdue", "failed", "renewing", "renewal due", "ok")
_RANK = {state: rank for rank, state in enumerate(STATES)}


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
    if now >= entry.renew_at:
        return "renewal due"
    return "ok"


def status_rows(
    stores: Iterable[tuple[str, Iterable[CachedCertificate]]],
    now: datetime,
    thresholds: Thresholds,
    running: set[tuple[str, str]],
    tracks: Mapping[tuple[str, str], Track],
) -> list[StatusRow]:
    """Every certificate's row, problems first (then soonest renewal first)."""
    rows = []
    for storage, entries in stores:
        for entry in entries:
            key = (storage, entry.digest)
            track = tracks.get(key)
            error = track.error if track is not None else None
            state = certificate_state(entry, now, thresholds, key in running, error)
            last = None
            if track is not None and track.fetches:
                client = max(track.fetches, key=lambda c: track.fetches[c].when)
                last = (track.fetches[client].when, client)
            rows.append(StatusRow(storage, entry, state, last, error))
    rows.sort(key=lambda row: (_RANK[row.state], row.entry.renew_at))
    return rows
