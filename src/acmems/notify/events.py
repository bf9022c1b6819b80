"""The events acmems tells operators about, as the exact bytes every receiver gets. Pure.

An event is one JSON object: ``id`` (unique; a retry sends the same bytes, so a receiver can drop
duplicates), ``event``, ``names`` (the certificate's names, lower case, in the CSR's order),
``time`` (RFC 3339 UTC, when it happened), ``block`` (the auth block), and per kind:

- ``issued``: ``not_after``, ``serial`` (lower-case hex, no colons), ``renewal``, ``profile``;
- ``failed``: ``error`` (one line), and where known ``attempt`` and ``next_attempt``;
- ``overdue``, ``expiring``: ``not_after``, ``renewal_point``, ``serial``, ``reminder``;
- ``not-picked-up``: ``client`` (the address that fetched the previous certificate), ``serial`` (the
  one it has not fetched), ``renewed``, ``reminder``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from acmems.core.event_kinds import EventKind

__all__ = ["Event", "make_event", "rfc3339"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its id, kind, the names it is about, and the body sent (byte for byte on retries)."""

    id: str
    kind: EventKind
    names: tuple[str, ...]
    body: bytes

    def fields(self) -> dict[str, object]:
        """The body as a dictionary (for a mail's text)."""
        loaded = json.loads(self.body)
        assert isinstance(loaded, dict)
        return loaded


def rfc3339(when: datetime | float) -> str:
    """``2027-03-01T19:21:44Z``: UTC, to the second."""
    moment = datetime.fromtimestamp(when, UTC) if isinstance(when, int | float) else when.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_event(
    kind: EventKind, names: Sequence[str], block: str, when: datetime | float, extra: Mapping[str, object] | None = None
) -> Event:
    """The event ``kind`` about ``names`` (lower-cased, order kept) with a new id."""
    lowered = tuple(name.lower() for name in names)
    event_id = secrets.token_hex(12)
    body: dict[str, object] = {"id": event_id, "event": kind, "names": list(lowered), "time": rfc3339(when)}
    body["block"] = block
    body.update(extra or {})
    return Event(event_id, kind, lowered, json.dumps(body, separators=(",", ":"), sort_keys=False).encode())
