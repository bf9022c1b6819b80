"""``type = database``: certificates kept in the cluster database, one namespace per storage block.

Each instance keeps in memory the metadata of every certificate (the index) and the chains it has
served or stored, so a cache hit asks the database nothing. It learns of certificates stored,
renewed or revoked by another instance from a notification on :data:`CHANGES_CHANNEL` and, since a
notification can be lost, from a look at the rows changed lately once a second. While the database
is away, what is held in memory is still answered; everything else raises :class:`DatabaseError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acmems.cluster.certificate_rows import (
    META,
    UPSERT,
    CertificateRow,
    certificate_rows,
    database_now,
    entry_of_row,
    from_epoch,
)
from acmems.cluster.database import ClusterDb
from acmems.cluster.leases import LEASES_CHANNEL, lease_key, take_lease
from acmems.core.settings import DatabaseStorage
from acmems.errors import DatabaseError
from acmems.lru import Lru
from acmems.storage.base import CachedCertificate, Claim, Origin, RequestedSince, StaleFence, csr_digest, describe_chain

__all__ = ["CHANGES_CHANNEL", "DatabaseStore"]

log = logging.getLogger(__name__)
CHANGES_CHANNEL = "acmems_certificates"  # payload: "<storage> <digest>"
_TOUCH_EVERY = 3600.0  # how often a hit updates requested_at ("last asked for")
_OVERLAP = 3.0  # seconds the once-a-second look reaches back (a transaction commits after its now())
_WAIT_POLL = 1.0  # a waiter looks at the lease this often, in case its notification is lost
_CLIENT = Origin()


@dataclasses.dataclass(frozen=True, slots=True)
class _Held:
    """A chain held in memory, and the serial of its certificate."""

    serial: int
    chain: bytes


class DatabaseStore:
    """Certificates in ``acmems_certificates`` under this storage block's name."""

    def __init__(self, settings: DatabaseStorage, db: ClusterDb, *, track_requests: bool = False) -> None:
        self.name = settings.name
        self.db = db
        self.where = f"database {db.where}"
        self.keeps_certificates = True
        self.renew_within = timedelta(days=settings.renew_within_days)
        self._index: dict[str, CachedCertificate] = {}
        # The chains served or stored since start (the least recently served dropped beyond
        # held-chains), each with its serial: only another certificate or a revocation drops one.
        self._chains: Lru[str, _Held] = Lru(settings.held_chains)
        self._suspect: set[str] = set()  # changed elsewhere (a notification): its serial to be checked
        self._requested = RequestedSince(track_requests)
        self._being_read = 0
        self._since: datetime | None = None  # the database time of the last look at changed rows
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._refreshed: dict[tuple[str, datetime], None] = {}  # changes already taken in
        db.listen(CHANGES_CHANNEL, self._notified)
        db.listen(LEASES_CHANNEL, self._released)
        db.every_second(self._look_for_changes, self._resync)

    # ------------------------------------------------------------------------ get / put

    async def get(
        self, csr_pem: bytes, profile: str | None = None, *, allow_due: bool = False, now: datetime | None = None
    ) -> bytes | None:
        """The chain from memory when held (no query), else from the database."""
        digest = csr_digest(csr_pem, profile)
        now = now or datetime.now(UTC)
        entry = self._index.get(digest)
        held = self._chains.get(digest)
        if held is not None and (entry is None or held.serial != entry.serial):
            held = None  # another certificate by now: this chain is not its
        if entry is not None and held is not None and digest not in self._suspect:
            if now < (entry.not_after if allow_due else entry.renew_at):
                self._note_request(entry)
                return held.chain  # the hot path
        try:
            row = await self._fetch(digest)
        except DatabaseError:
            # The database is away: what is held is answered while it is valid.
            if entry is not None and held is not None and now < entry.not_after:
                return held.chain
            raise
        self._suspect.discard(digest)
        if row is None or row.csr is None or row.chain is None or bytes(row.csr) != csr_pem:
            self._drop(digest)
            return None
        entry, chain = entry_of_row(row), bytes(row.chain)
        self._index[digest] = entry
        self._chains.put(digest, _Held(entry.serial, chain))
        if now >= (entry.not_after if allow_due else entry.renew_at):
            return None
        self._note_request(entry)
        return chain

    async def _fetch(self, digest: str) -> CertificateRow | None:
        async with self.db.transaction_of(certificate_rows()) as cursor:
            await cursor.execute(
                f"SELECT {META}, csr, chain FROM acmems_certificates "  # noqa: S608  # constant columns
                "WHERE storage = %(storage)s AND digest = %(digest)s AND NOT revoked",
                {"storage": self.name, "digest": digest},
            )
            return await cursor.fetchone()

    async def put(self, csr_pem: bytes, chain_pem: bytes, origin: Origin = _CLIENT) -> None:
        """Store the chain in one transaction, only under the current fence when ``origin`` has one.

        Raises:
            StaleFence: another instance took the lease over; nothing was stored.
            DatabaseError: the database did not answer; nothing was stored.
            ValueError: the chain is not a certificate.
        """
        row, entry = self._row(csr_pem, chain_pem, origin)
        digest = entry.digest
        async with self.db.transaction() as cursor:
            if origin.fence is not None:
                await cursor.execute(
                    "SELECT 1 FROM acmems_leases WHERE key = %s AND fence = %s AND expires > now() FOR UPDATE",
                    (lease_key(self.name, origin.verification or "", digest), origin.fence),
                )
                if await cursor.fetchone() is None:
                    raise StaleFence(f"fence {origin.fence} of {digest[:16]} is no longer current")
            await cursor.execute(UPSERT + " RETURNING updated", row)
            stored = await cursor.fetchone()
            await cursor.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, self._payload(digest)))
        if stored is not None:
            self._refreshed[(digest, stored[0])] = None  # our own change: nothing to re-read
        self._index[digest] = entry
        self._chains.put(digest, _Held(entry.serial, chain_pem))

    async def put_many(self, items: Sequence[tuple[bytes, bytes, Origin]]) -> None:
        """Store several chains in one transaction (``acmems import``); all or none."""
        described = [self._row(csr, chain, origin) for csr, chain, origin in items]
        async with self.db.transaction() as cursor:
            await cursor.executemany(UPSERT, [row for row, _entry in described])
            for _row, entry in described:
                await cursor.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, self._payload(entry.digest)))
        for _row, entry in described:
            self._index[entry.digest] = entry

    def _row(self, csr_pem: bytes, chain_pem: bytes, origin: Origin) -> tuple[dict[str, Any], CachedCertificate]:
        # Described before anything is written: a chain that is not a certificate is refused whole.
        digest = csr_digest(csr_pem, origin.profile)
        previous = self._index.get(digest)
        requested = time.time() if origin.requested or previous is None else previous.last_requested
        entry = describe_chain(
            digest, chain_pem, self.renew_within, requested, origin.profile, origin.verification, origin.ca
        )
        row = {
            "storage": self.name,
            "digest": digest,
            "csr": csr_pem,
            "chain": chain_pem,
            "names": list(entry.names),
            "serial": f"{entry.serial:x}",
            "not_before": entry.not_before,
            "not_after": entry.not_after,
            "renew_at": entry.renew_at,
            "profile": origin.profile,
            "verification": origin.verification,
            "requested_at": from_epoch(requested),
            "issued_by": self.db.name,
            "ca": origin.ca,
        }
        return row, entry

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Drop what is held of this CSR's certificate: the next ``get`` asks the database."""
        self._drop(csr_digest(csr_pem, profile))

    def _drop(self, digest: str) -> None:
        self._index.pop(digest, None)
        self._chains.pop(digest)
        self._suspect.discard(digest)

    # ---------------------------------------------------------------------- the index

    async def load_index(self) -> int:
        """Read every certificate's metadata (not the chains), counting as it reads."""
        self._being_read = 0
        loaded: dict[str, CachedCertificate] = {}
        try:
            async with self.db.transaction() as cursor:
                since = await database_now(cursor)
            async with self.db.streaming("acmems_index", certificate_rows()) as cursor:
                await cursor.execute(
                    f"SELECT {META} FROM acmems_certificates "  # noqa: S608  # constant columns
                    "WHERE storage = %(storage)s AND NOT revoked",
                    {"storage": self.name},
                )
                while rows := await asyncio.wait_for(cursor.fetchmany(2000), self.db.timeout):
                    for row in rows:
                        loaded[row.digest] = entry_of_row(row)
                    self._being_read = len(loaded)
        finally:
            self._being_read = 0
        loaded.update(self._index)
        self._index = loaded
        if self._since is None:
            self._since = since
        return len(loaded)

    def entries(self) -> list[CachedCertificate]:
        """The certificates known, soonest renewal first."""
        return sorted(self._index.values(), key=lambda e: e.renew_at)

    def count(self) -> int:
        """How many certificates are known (while the index is read: also those read so far)."""
        return len(self._index) + self._being_read

    def soonest_expiry(self) -> datetime | None:
        """When the first certificate known expires."""
        return min((e.not_after for e in self._index.values()), default=None)

    def update(self, entry: CachedCertificate) -> None:
        """A new renewal time (ARI) or next check of the certificate now stored (not of one it
        replaced): kept in memory and written in the background."""
        known = self._index.get(entry.digest)
        if known is None or known.serial != entry.serial:
            return  # replaced meanwhile (renewed here or by another instance): about the old one
        self._index[entry.digest] = entry
        # Marked as a change: the other instances take the window in at their next look, so the
        # CA's renewal-info is asked once for the cluster, and all follow one renewal schedule.
        self._background(
            "UPDATE acmems_certificates SET renew_at = %s, next_ari_check = %s, updated = clock_timestamp() "
            "WHERE storage = %s AND digest = %s AND serial = %s RETURNING updated",
            (entry.renew_at, from_epoch(entry.next_ari_check), self.name, entry.digest, f"{entry.serial:x}"),
            own_change=entry.digest,
        )

    def _background(self, statement: str, params: tuple[Any, ...], own_change: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._write(statement, params, own_change))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, statement: str, params: tuple[Any, ...], own_change: str | None) -> None:
        # A write nobody waits for: lost if the database is away (it is about timing, not content).
        try:
            async with self.db.transaction() as cursor:
                await cursor.execute(statement.encode(), params)
                row = await cursor.fetchone() if own_change is not None else None
        except DatabaseError as exc:
            log.debug("storage %s: %s", self.name, exc.message)
            return
        if own_change is not None and row is not None:
            self._refreshed[(own_change, row[0])] = None  # our own change: not re-read by our look

    # ----------------------------------------------------------------------- requests

    def note_requested(self, digest: str, when: float) -> None:
        """A request answered by a worker process."""
        entry = self._index.get(digest)
        if entry is not None and when - entry.last_requested >= _TOUCH_EVERY:
            self._touch(entry, when)

    def take_requested(self) -> set[str]:
        """The digests asked for since the last call (with ``track_requests``)."""
        return self._requested.take()

    def _note_request(self, entry: CachedCertificate) -> None:
        now = time.time()
        if now - entry.last_requested < _TOUCH_EVERY:
            return
        if self._requested.tracking:
            self._requested.add(entry.digest)
            self._index[entry.digest] = dataclasses.replace(entry, last_requested=now)
            return  # the main process writes it
        self._touch(entry, now)

    def _touch(self, entry: CachedCertificate, when: float) -> None:
        self._index[entry.digest] = dataclasses.replace(entry, last_requested=when)
        self._background(
            "UPDATE acmems_certificates SET requested_at = %s WHERE storage = %s AND digest = %s",
            (from_epoch(when), self.name, entry.digest),
        )

    # ------------------------------------------------------------------ other instances

    def _payload(self, digest: str) -> str:
        return f"{self.name} {digest} {self.db.instance}"

    def _notified(self, payload: str) -> None:
        # Another instance changed it: renewed (another serial), revoked, or only its metadata (an
        # ARI window). The next request asks the database once (the chain stays held if the serial
        # is the same); the index learns the new metadata at the next look, for every change at
        # once (an import of many certificates is one query, not one per certificate).
        storage, digest, instance = [*payload.split(" "), "", ""][:3]
        if storage == self.name and instance != self.db.instance and digest in self._chains:
            self._suspect.add(digest)

    async def _look_for_changes(self) -> None:
        if self._since is None:  # a worker process, which reads no index: start from now
            async with self.db.transaction() as cursor:
                self._since = await database_now(cursor)
            return
        async with self.db.transaction_of(certificate_rows()) as cursor:
            now = await database_now(cursor)
            await cursor.execute(
                f"SELECT {META}, revoked, updated FROM acmems_certificates "  # noqa: S608  # constant columns
                "WHERE storage = %(storage)s AND updated > %(since)s",
                {"storage": self.name, "since": self._since - timedelta(seconds=_OVERLAP)},
            )
            rows = await cursor.fetchall()
        self._since = now
        for row in rows:
            digest, revoked, updated = row.digest, row.revoked, row.updated
            assert updated is not None  # selected, and never NULL
            if (digest, updated) in self._refreshed:
                continue  # seen in an earlier look (the looks overlap), or our own change
            self._refreshed[(digest, updated)] = None
            self._suspect.discard(digest)
            if revoked:
                self._drop(digest)
                continue
            entry = entry_of_row(row)
            self._index[digest] = entry
            held = self._chains.peek(digest)
            if held is not None and held.serial != entry.serial:
                self._chains.pop(digest)  # renewed elsewhere: the new chain is read at the next request
        if len(self._refreshed) > 200_000:
            self._refreshed.clear()

    async def _resync(self) -> None:
        # Notifications may have been lost while the listening connection was down: keep the
        # chains whose certificate is still the current one.
        await self.load_index()
        for digest in self._chains.keys():
            entry = self._index.get(digest)
            held = self._chains.peek(digest)
            if entry is None or held is None or held.serial != entry.serial:
                self._chains.pop(digest)

    # --------------------------------------------------------------------------- other

    async def read(self, entry: CachedCertificate) -> tuple[bytes, bytes]:
        """The stored CSR and chain of ``entry`` (for its renewal)."""
        try:
            row = await self._fetch(entry.digest)
        except DatabaseError as exc:
            raise OSError(exc.message) from None
        if row is None or row.csr is None or row.chain is None:
            raise FileNotFoundError(f"storage {self.name}: {entry.digest[:16]}... is no longer stored")
        return bytes(row.csr), bytes(row.chain)

    async def remove_serial(self, serial: int) -> int:
        """Mark the certificates with this serial revoked; every instance drops them within a second."""
        async with self.db.transaction() as cursor:
            await cursor.execute(
                "UPDATE acmems_certificates SET revoked = true, updated = clock_timestamp() "
                "WHERE storage = %s AND serial = %s AND NOT revoked RETURNING digest",
                (self.name, f"{serial:x}"),
            )
            digests = [row[0] for row in await cursor.fetchall()]
            for digest in digests:
                await cursor.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, self._payload(digest)))
        for digest in digests:
            self._drop(digest)
        return len(digests)

    def problems(self) -> list[str]:
        """None of its own: the server reports the cluster database's state once for all stores."""
        return []

    # ----------------------------------------------------------------------- claims

    async def claim(self, digest: str, verification: str) -> Claim | None:
        """The cluster-wide lease of this certificate's order, or None while another instance holds it."""
        return await take_lease(self.db, lease_key(self.name, verification, digest))

    async def wait_released(self, digest: str, verification: str) -> None:
        """Until the lease is gone or lapsed: woken by its notification, and looking once a second."""
        key = lease_key(self.name, verification, digest)
        loop = asyncio.get_running_loop()
        while True:
            async with self.db.transaction() as cursor:
                await cursor.execute("SELECT expires > now() FROM acmems_leases WHERE key = %s", (key,))
                row = await cursor.fetchone()
            if row is None or not row[0]:
                return
            waiter = loop.create_future()
            self._waiters.setdefault(key, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, _WAIT_POLL)
            except TimeoutError:
                pass
            finally:
                waiting = self._waiters.get(key, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(key, None)

    def _released(self, key: str) -> None:
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)
