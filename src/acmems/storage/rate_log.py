"""Where the events the rate limits count are kept (:class:`RateLog`): a small file in the account
directory for one acmems (:class:`FileRateLog`), the cluster database for a cluster
(:class:`acmems.cluster.rate_log.DatabaseRateLog`: every instance counts the same orders)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Protocol

from acmems.core.rate_limits import Event
from acmems.fileio import write_atomic

__all__ = ["KEEP", "FileRateLog", "RateLog"]

log = logging.getLogger("acmems.rate_log")
KEEP = 8 * 86400.0  # longer than any window worth configuring (Let's Encrypt's longest: 7 days)


class RateLog(Protocol):
    """The events of each account (by its ``acme-server``)."""

    async def events(self, account: str) -> list[Event]:
        """The account's events of the last :data:`KEEP` seconds."""
        ...

    async def record(self, account: str, event: Event) -> None:
        """Keep one more event."""
        ...


class FileRateLog:
    """``<account dir>/rate-events.json``: rewritten atomically (it holds a week of one account's orders)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._events: dict[str, list[Event]] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> dict[str, list[Event]]:
        try:
            data = json.loads(self.path.read_bytes())
            return {
                account: [Event(float(e[0]), str(e[1]), str(e[2]), tuple(e[3])) for e in rows]
                for account, rows in data.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            log.warning("%s cannot be read (%s); counting the rate limits afresh", self.path, exc)
            return {}

    async def events(self, account: str) -> list[Event]:
        """From memory after the first read."""
        async with self._lock:
            if self._events is None:
                self._events = await asyncio.to_thread(self._load)
            cutoff = time.time() - KEEP
            return [e for e in self._events.get(account, []) if e.at >= cutoff]

    async def record(self, account: str, event: Event) -> None:
        """Kept in memory and written (in a thread) before this returns."""
        async with self._lock:
            if self._events is None:
                self._events = await asyncio.to_thread(self._load)
            cutoff = time.time() - KEEP
            for name, rows in self._events.items():
                self._events[name] = [e for e in rows if e.at >= cutoff]
            self._events.setdefault(account, []).append(event)
            data = {a: [[e.at, e.kind, e.names, list(e.domains)] for e in rows] for a, rows in self._events.items()}
            try:
                await asyncio.to_thread(write_atomic, self.path, json.dumps(data).encode(), 0o600)
            except OSError as exc:
                log.warning("cannot write %s: %s (the rate limits are counted in memory meanwhile)", self.path, exc)
