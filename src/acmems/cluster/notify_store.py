"""The notifier's outbox and memory in the cluster database: every instance's undelivered events,
each delivered by one instance; the pickups of every instance; the watch on one instance at a time.

An event is written by the instance it happened on, claimed by it (``claimed_until``: now + a
lease) and sent at once; the claim is extended while it retries. An instance that dies leaves its
claims to lapse, and another instance adopts the events (:meth:`DatabaseOutbox.adopt`). A receiver
can see an event twice only when an instance died between the receiver's answer and the delete;
the ``id`` is the same.

The watch runs where the lease ``notify/watch`` is held (:mod:`acmems.cluster.leases`); its marks
are in ``acmems_notify_marks`` so that the next holder goes on without sending anything again.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import TupleRow, dict_row

from acmems.cluster.database import ClusterDb
from acmems.cluster.leases import DatabaseClaim, take_lease
from acmems.errors import AcmemsError
from acmems.notify.events import Event
from acmems.notify.outbox import Pending
from acmems.notify.pickups import Pickups, Track
from acmems.notify.watch import Fetch, Mark

__all__ = ["ADOPT_EVERY", "WATCH_LEASE", "DatabaseOutbox", "DatabaseState"]

log = logging.getLogger("acmems.notify")
WATCH_LEASE = "notify/watch"
# A claim lasts beyond the next retry (and a send, at most 10 s): while this instance lives, nobody
# else sends the event.
_CLAIM_SECONDS = 15.0
ADOPT_EVERY = 5.0  # how often an instance looks for events whose claim lapsed
_PRUNE_AFTER = 400 * 86400.0


class DatabaseOutbox:
    """``acmems_notify_outbox``: one row per event and receiver."""

    adopt_every: float | None = ADOPT_EVERY

    def __init__(self, db: ClusterDb) -> None:
        self.db = db

    async def add(self, receiver: str, event: Event, now: float) -> Pending:
        pending = Pending(event.id, event.kind, event.body, 0, now, now)
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "INSERT INTO acmems_notify_outbox (receiver, id, kind, body, attempts, first_at, next_at, "
                "claimed_by, claimed_until) VALUES (%s, %s, %s, %s, 0, %s, %s, %s, "
                "now() + %s * interval '1 second') ON CONFLICT DO NOTHING",
                (receiver, event.id, event.kind, event.body, now, now, self.db.instance, _CLAIM_SECONDS),
            )
        return pending

    async def load(self, receiver: str) -> list[Pending]:
        return await self.adopt(receiver)

    async def adopt(self, receiver: str) -> list[Pending]:
        async with self.db.transaction_of(dict_row) as cursor:
            await cursor.execute(
                "UPDATE acmems_notify_outbox SET claimed_by = %(instance)s, "
                "claimed_until = now() + %(claim)s * interval '1 second' "
                "WHERE (receiver, id) IN (SELECT receiver, id FROM acmems_notify_outbox WHERE receiver = %(receiver)s "
                "AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY first_at LIMIT 100 "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING id, kind, body, attempts, first_at, next_at, last_error",
                {"instance": self.db.instance, "claim": _CLAIM_SECONDS, "receiver": receiver},
            )
            rows = await cursor.fetchall()
        found = [
            Pending(
                str(r["id"]),
                str(r["kind"]),
                bytes(r["body"]),
                int(r["attempts"]),
                float(r["first_at"]),
                float(r["next_at"]),
                str(r["last_error"]),
            )
            for r in rows
        ]
        found.sort(key=lambda p: p.first)
        return found

    async def retry_later(self, receiver: str, pending: Pending) -> None:
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "UPDATE acmems_notify_outbox SET attempts = %s, next_at = %s, last_error = %s, "
                "claimed_until = now() + (%s + greatest(0, %s - extract(epoch FROM now()))) * interval '1 second' "
                "WHERE receiver = %s AND id = %s AND claimed_by = %s",
                (
                    pending.attempts,
                    pending.next,
                    pending.last_error,
                    _CLAIM_SECONDS,
                    pending.next,
                    receiver,
                    pending.id,
                    self.db.instance,
                ),
            )

    async def done(self, receiver: str, pending: Pending) -> None:
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "DELETE FROM acmems_notify_outbox WHERE receiver = %s AND id = %s", (receiver, pending.id)
            )


class DatabaseState:
    """``acmems_pickups``, ``acmems_cert_notes`` and ``acmems_notify_marks``."""

    def __init__(self, db: ClusterDb) -> None:
        self.db = db
        self._lease: DatabaseClaim | None = None

    async def load(self) -> tuple[dict[str, Mark], Pickups]:
        try:
            return {}, await self._read_pickups()
        except AcmemsError as exc:
            log.warning("notify: cannot read the pickups from the cluster database: %s", exc.message)
            return {}, Pickups()

    async def save(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        dirty = list(pickups.dirty)
        if not dirty and marks is None:
            return
        try:
            async with self.db.transaction() as cursor:
                fetches = [
                    (storage, digest, client, format(f.serial, "x"), f.when)
                    for storage, digest in dirty
                    if (track := pickups.tracks.get((storage, digest))) is not None
                    for client, f in track.fetches.items()
                ]
                if fetches:
                    await cursor.executemany(
                        "INSERT INTO acmems_pickups AS p (storage, digest, client, serial, at) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (storage, digest, client) DO UPDATE "
                        "SET serial = EXCLUDED.serial, at = EXCLUDED.at WHERE p.at < EXCLUDED.at",
                        fetches,
                    )
                notes = [
                    (storage, digest, t.renewed, _hex(t.renewed_serial), t.error, t.error_time, t.updated)
                    for storage, digest in dirty
                    if (t := pickups.tracks.get((storage, digest))) is not None and t.updated
                ]
                if notes:
                    await cursor.executemany(
                        "INSERT INTO acmems_cert_notes AS n (storage, digest, renewed, renewed_serial, error, "
                        "error_time, updated) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (storage, digest) "
                        "DO UPDATE SET renewed = EXCLUDED.renewed, renewed_serial = EXCLUDED.renewed_serial, "
                        "error = EXCLUDED.error, error_time = EXCLUDED.error_time, updated = EXCLUDED.updated "
                        "WHERE n.updated < EXCLUDED.updated",
                        notes,
                    )
                if marks is not None and not await self._holds_watch(cursor):
                    marks = None  # the watch went to another instance: its marks are the ones that count
                if marks is not None:
                    await cursor.execute("DELETE FROM acmems_notify_marks")
                    if marks:
                        await cursor.executemany(
                            "INSERT INTO acmems_notify_marks (key, began, sent) VALUES (%s, %s, %s)",
                            [(key, m.began, m.sent) for key, m in marks.items()],
                        )
                    await cursor.execute(
                        "DELETE FROM acmems_pickups WHERE at < extract(epoch FROM now()) - %s", (_PRUNE_AFTER,)
                    )
        except AcmemsError as exc:
            log.warning("notify: cannot save to the cluster database (tried again next pass): %s", exc.message)
            return
        pickups.dirty.difference_update(dirty)

    async def _holds_watch(self, cursor: psycopg.AsyncCursor[TupleRow]) -> bool:
        """Whether this instance still holds the watch's lease under its fence (the row locked for
        the transaction that writes the marks)."""
        lease = self._lease
        if lease is None or lease.lost:
            return False
        await cursor.execute(
            "SELECT 1 FROM acmems_leases WHERE key = %s AND fence = %s AND expires > now() FOR UPDATE",
            (WATCH_LEASE, lease.fence),
        )
        if await cursor.fetchone() is not None:
            return True
        lease.lost = True
        log.warning("notify: the watch's lease went to another instance: its marks are not written from here")
        return False

    async def refresh(self, pickups: Pickups) -> Pickups:
        try:
            shared = await self._read_pickups()
        except AcmemsError as exc:
            log.debug("notify: cannot read the pickups: %s", exc.message)
            return pickups
        for key in pickups.dirty:  # changed here since the save: this instance's are newer
            if key in pickups.tracks:
                shared.tracks[key] = pickups.tracks[key]
        shared.dirty = set(pickups.dirty)
        return shared

    async def _read_pickups(self) -> Pickups:
        pickups = Pickups()
        async with self.db.transaction() as cursor:
            await cursor.execute("SELECT storage, digest, client, serial, at FROM acmems_pickups")
            for storage, digest, client, serial, at in await cursor.fetchall():
                track = pickups.tracks.setdefault((storage, digest), Track())
                track.fetches[client] = Fetch(int(serial, 16), float(at))
            await cursor.execute(
                "SELECT storage, digest, renewed, renewed_serial, error, error_time, updated FROM acmems_cert_notes"
            )
            for storage, digest, renewed, serial, error, error_time, updated in await cursor.fetchall():
                track = pickups.tracks.setdefault((storage, digest), Track())
                track.renewed = renewed
                track.renewed_serial = int(serial, 16) if serial else None
                track.error, track.error_time, track.updated = error, error_time, float(updated)
        return pickups

    async def may_watch(self) -> bool:
        if self._lease is not None and not self._lease.lost:
            return True
        try:
            self._lease = await take_lease(self.db, WATCH_LEASE)
        except AcmemsError:
            self._lease = None
        return self._lease is not None

    async def watch_marks(self) -> dict[str, Mark] | None:
        try:
            async with self.db.transaction() as cursor:
                await cursor.execute("SELECT key, began, sent FROM acmems_notify_marks")
                rows = await cursor.fetchall()
        except AcmemsError:
            return None
        return {str(k): Mark(float(b), float(s)) for k, b, s in rows}

    async def close(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        if not self.db.available:
            if pickups.dirty or marks is not None:
                log.warning("notify: the cluster database is away at stop: the last pickups are not saved")
            if self._lease is not None:
                self._lease.abandon()  # it lapses
                self._lease = None
            return
        await self.save(marks, pickups)
        if self._lease is not None:
            await self._lease.release()  # another instance takes the watch over at its next pass
            self._lease = None


def _hex(serial: int | None) -> str | None:
    return None if serial is None else format(serial, "x")
