"""The kinds of event acmems tells operators about, and a receiver's ``events`` filter. Pure."""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = ["DEFAULT_EVENTS", "EVENT_KINDS", "EventKind", "parse_events"]


class EventKind(StrEnum):
    """An event's ``event`` field (docs/notify.md)."""

    ISSUED = "issued"
    FAILED = "failed"
    OVERDUE = "overdue"
    EXPIRING = "expiring"
    NOT_PICKED_UP = "not-picked-up"


EVENT_KINDS: tuple[EventKind, ...] = tuple(EventKind)
#: a receiver's ``events`` when not given: everything that needs a person
DEFAULT_EVENTS: frozenset[EventKind] = frozenset(EventKind) - {EventKind.ISSUED}


def parse_events(value: str) -> frozenset[EventKind]:
    """A receiver's ``events`` filter: names separated by commas or spaces.

    Raises:
        ValueError: empty, or a name that is not an event (the message lists the valid names).
    """
    names = [part for part in re.split(r"[\s,]+", value.strip()) if part]
    valid = ", ".join(EVENT_KINDS)
    if not names:
        raise ValueError(f"names no event; give one or more of: {valid}")
    unknown = [name for name in names if name not in EVENT_KINDS]
    if unknown:
        raise ValueError(f"{', '.join(repr(n) for n in unknown)} is not an event; valid events: {valid}")
    return frozenset(EventKind(name) for name in names)
