"""Failed events coalesced: a client that retries a failing order every minute must not send the
operators a mail a minute. At most one ``failed`` event per auth block and set of names per
``[notify] repeat-failed``; the failures in between are counted and the next event says how many
("and 12 more since ...").

Pure: the decision from what was sent and when.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from acmems.core.rate_limits import names_key
from acmems.lru import Lru

__all__ = ["FailedCoalescer", "Repeats"]

_KEYS = 10_000  # blocks x sets of names remembered; the least recent ones are forgotten first


@dataclass(frozen=True, slots=True)
class Repeats:
    """What the event to send carries: the failures held back since the last one, and since when."""

    count: int = 0
    since: float = 0.0


@dataclass(slots=True)
class _Last:
    sent: float
    held: int = 0
    held_since: float = 0.0


class FailedCoalescer:
    """``repeat`` seconds between two failed events of one block and set of names (0: every one)."""

    def __init__(self, repeat: float) -> None:
        self.repeat = repeat
        self._last: Lru[tuple[str, str], _Last] = Lru(_KEYS)

    def admit(self, block: str, names: Iterable[str], now: float) -> Repeats | None:
        """The repeats to report with an event sent now, or None: hold this one back (counted)."""
        if self.repeat <= 0:
            return Repeats()
        key = (block, names_key(names))
        last = self._last.get(key)
        if last is not None and now - last.sent < self.repeat:
            if last.held == 0:
                last.held_since = now
            last.held += 1
            return None
        self._last.put(key, _Last(now))
        if last is None or last.held == 0:
            return Repeats()
        return Repeats(last.held, last.held_since)
