"""Events not yet delivered, kept so that they survive a restart (at least once, never lost).

:class:`FileOutbox` keeps one file per event and receiver in a directory beside the account
(``notify-outbox/<receiver>/<id>.json``, written atomically); a delivered event's file is removed.
The retry schedule is :func:`retry_delay`: 5 s, then doubling to an hour, for a day.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path
from typing import Protocol

from acmems.core.backoff import capped_backoff
from acmems.fileio import write_atomic
from acmems.notify.events import Event

__all__ = ["GIVE_UP_AFTER", "FileOutbox", "Outbox", "Pending", "retry_delay"]

log = logging.getLogger("acmems.notify")
GIVE_UP_AFTER = 24 * 3600.0
_FIRST_RETRY = 5.0
_LONGEST_PAUSE = 3600.0


def retry_delay(attempts: int) -> float:
    """Seconds until the next try after ``attempts`` failed ones (1: the first retry). Pure."""
    return capped_backoff(attempts, _FIRST_RETRY, _LONGEST_PAUSE)


@dataclass(frozen=True, slots=True)
class Pending:
    """An event waiting for one receiver: its bytes, how often it failed, when it came, when next."""

    id: str
    kind: str
    body: bytes
    attempts: int = 0
    first: float = 0.0
    next: float = 0.0
    last_error: str = ""

    def failed(self, now: float, error: str) -> Pending:
        attempts = self.attempts + 1
        return replace(self, attempts=attempts, next=now + retry_delay(attempts), last_error=error)


class Outbox(Protocol):
    """Where the notifier keeps what it has not delivered (files here; the cluster's database)."""

    adopt_every: float | None  # a shared outbox: how often to look for events others left (seconds)

    async def adopt(self, receiver: str) -> list[Pending]:
        """Events for ``receiver`` that no live instance is delivering, now claimed by this one."""
        ...

    async def add(self, receiver: str, event: Event, now: float) -> Pending: ...

    async def load(self, receiver: str) -> list[Pending]:
        """What ``receiver`` has pending (at start)."""
        ...

    async def retry_later(self, receiver: str, pending: Pending) -> None: ...

    async def done(self, receiver: str, pending: Pending) -> None:
        """Delivered, or given up: forget it."""
        ...


def _folder_name(receiver: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", receiver) and not receiver.startswith("."):
        return receiver
    return "r-" + sha256(receiver.encode()).hexdigest()[:24]


class FileOutbox:
    """One JSON file per pending event under ``directory/<receiver>/``."""

    adopt_every: float | None = None  # only this process uses it: everything is loaded at start

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def adopt(self, receiver: str) -> list[Pending]:
        return []

    def _path(self, receiver: str, event_id: str) -> Path:
        return self.directory / _folder_name(receiver) / f"{event_id}.json"

    def _write(self, receiver: str, pending: Pending) -> None:
        record = {
            "id": pending.id,
            "kind": pending.kind,
            "body": pending.body.decode(),
            "attempts": pending.attempts,
            "first": pending.first,
            "next": pending.next,
            "last_error": pending.last_error,
        }
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self._path(receiver, pending.id), json.dumps(record).encode(), mode=0o600)

    async def add(self, receiver: str, event: Event, now: float) -> Pending:
        pending = Pending(event.id, event.kind, event.body, 0, now, now)
        await asyncio.to_thread(self._write, receiver, pending)
        return pending

    async def retry_later(self, receiver: str, pending: Pending) -> None:
        await asyncio.to_thread(self._write, receiver, pending)

    async def done(self, receiver: str, pending: Pending) -> None:
        await asyncio.to_thread(self._path(receiver, pending.id).unlink, missing_ok=True)

    async def load(self, receiver: str) -> list[Pending]:
        return await asyncio.to_thread(self._read_all, receiver)

    def _read_all(self, receiver: str) -> list[Pending]:
        folder = self.directory / _folder_name(receiver)
        found: list[Pending] = []
        if not folder.is_dir():
            return found
        for temp in folder.glob(".*.tmp"):  # a write a killed process did not finish
            temp.unlink(missing_ok=True)
        for path in sorted(folder.glob("*.json")):
            try:
                raw = json.loads(path.read_text())
                found.append(
                    Pending(
                        str(raw["id"]),
                        str(raw["kind"]),
                        str(raw["body"]).encode(),
                        int(raw["attempts"]),
                        float(raw["first"]),
                        float(raw["next"]),
                        str(raw.get("last_error", "")),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("notify: cannot read the pending event %s (%s); it is left there", path, exc)
        found.sort(key=lambda p: p.first)
        return found
