"""The notifier: turns what happens into events, keeps them until each receiver took them, and
looks for overdue, expiring and not-picked-up certificates.

One instance keeps its outbox and state in files; a cluster in its database (each event delivered by
the instance that claimed it; the watch runs on one instance at a time).

``issued``/``failed``/``fetched`` are called on the event loop by the issuer, the renewer and the
sign handler and never wait: each receiver has a task of its own that writes the event to the
outbox, sends it, and retries on failure (:func:`acmems.notify.outbox.retry_delay`), so a slow or
dead receiver never slows ``/sign``. The watch (every ``[notify] check-interval``) runs
:func:`acmems.notify.watch.watch` over every store's certificates; its marks and the pickups are
kept by a :class:`acmems.notify.state.NotifyState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cryptography import x509

from acmems.core.event_kinds import EventKind
from acmems.core.settings import NotifySettings, ReceiverSettings
from acmems.lru import Lru
from acmems.notify.coalesce import FailedCoalescer
from acmems.notify.events import Event, make_event, rfc3339
from acmems.notify.outbox import GIVE_UP_AFTER, Outbox, Pending
from acmems.notify.pickups import Pickups
from acmems.notify.senders import DeliveryError, Sender, make_sender
from acmems.notify.state import NotifyState
from acmems.notify.watch import Mark, Watched, watch

__all__ = ["Notifier", "leaf_facts"]

log = logging.getLogger("acmems.notify")
_SERIALS = 4096


def leaf_facts(chain: bytes) -> tuple[int, datetime]:
    """The leaf's serial and not-after."""
    leaf = x509.load_pem_x509_certificate(chain)
    return leaf.serial_number, leaf.not_valid_after_utc


class _Receiver:
    """One receiver's sender, queue of new events, and pending events (soonest retry first)."""

    def __init__(self, settings: ReceiverSettings) -> None:
        self.settings = settings
        self.sender: Sender = make_sender(settings)
        self.incoming: asyncio.Queue[Event] = asyncio.Queue()
        self.pending: list[Pending] = []
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0


class Notifier:
    """Events to the receivers of ``settings``; state kept in ``state_path`` and ``outbox``."""

    def __init__(self, settings: NotifySettings, outbox: Outbox, state: NotifyState) -> None:
        self.settings = settings
        self.outbox = outbox
        self.state = state
        self.pickups = Pickups()
        self.marks: dict[str, Mark] = {}
        self.watch_passes = 0  # passes of the watch run here (a test's and an operator's sign of life)
        self.receivers: dict[str, _Receiver] = {}
        self.coalescer = FailedCoalescer(settings.repeat_failed)
        self.failed_held = 0  # failed events held back by [notify] repeat-failed (counted in the next)
        self._serials: Lru[bytes, int] = Lru(_SERIALS)
        self._watch_task: asyncio.Task[None] | None = None
        self._marks_changed = False
        self._watching = False  # whether this instance ran the last pass of the watch

    # ------------------------------------------------------------------------- what happens

    def issued(
        self,
        storage: str,
        digest: str,
        block: str,
        names: Iterable[str],
        chain: bytes,
        profile: str | None,
        renewal: bool,
        client: str | None = None,
    ) -> None:
        """A certificate was issued and stored (``client``: the ACME account that ordered it)."""
        serial, not_after = leaf_facts(chain)
        self._serials.put(chain, serial)
        now = time.time()
        self.pickups.issued(storage, digest, serial, now, renewal)
        extra = {"not_after": rfc3339(not_after), "serial": format(serial, "x"), "renewal": renewal, "profile": profile}
        if client is not None:
            extra["acme_account"] = client
        self.emit(make_event(EventKind.ISSUED, list(names), block, now, extra))

    def failed(
        self,
        storage: str,
        digest: str,
        block: str,
        names: Iterable[str],
        error: str,
        attempt: int | None = None,
        next_attempt: float | None = None,
        client: str | None = None,
    ) -> None:
        """An order failed: an event, unless one for this block and these names went out less than
        ``[notify] repeat-failed`` ago (then it is counted in the next one)."""
        now = time.time()
        line = " ".join(error.split())
        self.pickups.failed(storage, digest, line, now)
        names = list(names)
        repeats = self.coalescer.admit(block, names, now)
        if repeats is None:
            self.failed_held += 1
            return
        extra: dict[str, object] = {"error": line}
        if client is not None:
            extra["acme_account"] = client
        if repeats.count:
            extra["repeats"] = repeats.count
            extra["repeats_since"] = rfc3339(repeats.since)
        if attempt is not None:
            extra["attempt"] = attempt
        if next_attempt is not None:
            extra["next_attempt"] = rfc3339(next_attempt)
        self.emit(make_event(EventKind.FAILED, list(names), block, now, extra))

    def fetched(self, storage: str, digest: str, client: str, chain: bytes) -> None:
        """A client got this chain (a dictionary update: cheap enough for every cache hit)."""
        serial = self._serials.get(chain)
        if serial is None:
            try:
                serial = leaf_facts(chain)[0]
            except ValueError:
                return
            self._serials.put(chain, serial)
        self.pickups.fetched(storage, digest, client, serial, time.time())

    def fetched_serial(self, storage: str, digest: str, client: str, serial: int, when: float) -> None:
        """A worker process answered ``client`` with the certificate ``serial`` at ``when``."""
        self.pickups.fetched(storage, digest, client, serial, when)

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every receiver whose ``events`` select it; never waits."""
        for receiver in self.receivers.values():
            if event.kind in receiver.settings.events:
                receiver.incoming.put_nowait(event)

    # ------------------------------------------------------------------------- running

    async def start(self, watched: Callable[[], list[Watched]] | None) -> None:
        """Read the saved state and pending events; start a task per receiver and the watch."""
        self.marks, self.pickups = await self.state.load()
        await self._take_watch()
        await self.configure(self.settings)
        if watched is not None:
            self._watch_task = asyncio.create_task(self._watch_forever(watched))

    async def configure(self, settings: NotifySettings) -> None:
        """Use these receivers (at start, and after a reload): a receiver whose settings changed is
        restarted; one removed stops (its pending events stay in the outbox for when it comes back)."""
        self.settings = settings
        self.coalescer.repeat = settings.repeat_failed
        wanted = {r.name: r for r in settings.receivers}
        for name, receiver in list(self.receivers.items()):
            if wanted.get(name) != receiver.settings:
                await self._stop_receiver(receiver)
                del self.receivers[name]
        for name, receiver_settings in wanted.items():
            if name not in self.receivers:
                receiver = _Receiver(receiver_settings)
                receiver.pending = await self.outbox.load(name)
                if receiver.pending:
                    log.info("notify %s: %d event(s) from before the restart to deliver", name, len(receiver.pending))
                receiver.task = asyncio.create_task(self._deliver_forever(receiver))
                self.receivers[name] = receiver

    async def _stop_receiver(self, receiver: _Receiver) -> None:
        if receiver.task is not None:
            receiver.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver.task
        await receiver.sender.close()

    async def stop(self) -> None:
        """Stop every task (what is pending stays in the outbox) and save the state."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for receiver in self.receivers.values():
            await self._stop_receiver(receiver)
        await self.state.close(self._changed_marks(), self.pickups)

    def queue_length(self) -> int:
        return sum(len(r.pending) + r.incoming.qsize() for r in self.receivers.values())

    # ------------------------------------------------------------------------- delivery

    async def _deliver_forever(self, receiver: _Receiver) -> None:
        name = receiver.settings.name
        adopted = time.monotonic()
        while True:
            now = time.time()
            soonest = min((p.next for p in receiver.pending), default=None)
            wait = None if soonest is None else max(0.0, soonest - now)
            if self.outbox.adopt_every is not None:
                # A shared outbox: events another instance kept and did not deliver (it is gone).
                if time.monotonic() - adopted >= self.outbox.adopt_every:
                    adopted = time.monotonic()
                    await self._adopt(receiver)
                wait = self.outbox.adopt_every if wait is None else min(wait, self.outbox.adopt_every)
            if receiver.incoming.empty() and (wait is None or wait > 0):
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(receiver.incoming.get(), wait)
                    await self._keep(receiver, event)
            while not receiver.incoming.empty():
                await self._keep(receiver, receiver.incoming.get_nowait())
            now = time.time()
            for pending in [p for p in receiver.pending if p.next <= now]:
                await self._send(receiver, name, pending)

    async def _adopt(self, receiver: _Receiver) -> None:
        try:
            found = await self.outbox.adopt(receiver.settings.name)
        except Exception as exc:
            log.debug("notify %s: cannot look for events to adopt: %s", receiver.settings.name, exc)
            return
        known = {p.id for p in receiver.pending}
        fresh = [p for p in found if p.id not in known]
        if fresh:
            log.info("notify %s: took over %d undelivered event(s)", receiver.settings.name, len(fresh))
            receiver.pending += fresh

    async def _keep(self, receiver: _Receiver, event: Event) -> None:
        try:
            pending = await self.outbox.add(receiver.settings.name, event, time.time())
        except Exception as exc:  # the outbox cannot keep it: still try to send it now
            log.error("notify %s: cannot keep event %s for retries: %s", receiver.settings.name, event.id, exc)
            pending = Pending(event.id, event.kind, event.body, 0, time.time(), time.time())
        receiver.pending.append(pending)

    async def _send(self, receiver: _Receiver, name: str, pending: Pending) -> None:
        try:
            await receiver.sender.send(pending)
        except DeliveryError as exc:
            receiver.failed += 1
            receiver.pending.remove(pending)
            now = time.time()
            if now - pending.first >= GIVE_UP_AFTER:
                receiver.dropped += 1
                log.error(
                    "notify %s: dropped %s event %s after %d attempts over a day: %s",
                    name,
                    pending.kind,
                    pending.id,
                    pending.attempts + 1,
                    exc,
                )
                await self._forget(name, pending)
                return
            later = pending.failed(now, str(exc))
            receiver.pending.append(later)
            log.warning(
                "notify %s: %s event %s not delivered (%s); next try in %.0f s",
                name,
                pending.kind,
                pending.id,
                exc,
                later.next - now,
            )
            try:
                await self.outbox.retry_later(name, later)
            except Exception as failed:
                log.error("notify %s: cannot note the retry of %s: %s", name, pending.id, failed)
            return
        receiver.sent += 1
        receiver.pending.remove(pending)
        log.info("notify %s: delivered %s event %s", name, pending.kind, pending.id)
        await self._forget(name, pending)

    async def _forget(self, name: str, pending: Pending) -> None:
        try:
            await self.outbox.done(name, pending)
        except Exception as exc:
            log.error("notify %s: cannot remove the delivered event %s: %s", name, pending.id, exc)

    # ------------------------------------------------------------------------- the watch

    async def _watch_forever(self, watched: Callable[[], list[Watched]]) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval)
            try:
                await self.check_once(watched())
            except Exception:
                log.exception("notify: the check for overdue and expiring certificates failed")

    async def check_once(self, items: list[Watched]) -> None:
        """One pass: save this instance's pickups and read everyone's; then, on the one instance that
        watches, send what began or is due for a reminder and save the marks."""
        await self.state.save(self._changed_marks(), self.pickups)
        self.pickups = await self.state.refresh(self.pickups)
        if not await self._take_watch():
            return
        events, marks = watch(items, datetime.now(UTC), self.settings.thresholds, self.marks)
        self.watch_passes += 1
        if marks != self.marks:
            self._marks_changed = True
        self.marks = marks
        for event in events:
            log.info("notify: %s for %s", event.kind, ", ".join(event.names))
            self.emit(event)
        known: dict[str, set[str]] = {}
        for item in items:
            known.setdefault(item.storage, set()).add(item.entry.digest)
        self.pickups.prune(time.time(), known)
        if self._marks_changed or self.pickups.changed:
            changed = self._changed_marks()
            self.pickups.changed = False
            await self.state.save(changed, self.pickups)

    def _changed_marks(self) -> dict[str, Mark] | None:
        """The marks to save: only from the instance that watches, only when they changed."""
        if not (self._watching and self._marks_changed):
            return None
        self._marks_changed = False
        return self.marks

    async def _take_watch(self) -> bool:
        watching = await self.state.may_watch()
        if watching and not self._watching:
            inherited = await self.state.watch_marks()
            if inherited is not None:
                self.marks = inherited  # the watch moved here: go on where the other instance was
        self._watching = watching
        return watching

    def count(self, kind: EventKind) -> int:
        """How many conditions of ``kind`` are in force."""
        return sum(1 for key in self.marks if key.startswith(kind + "/"))
