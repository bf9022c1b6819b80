"""Failed events coalesced per auth block and set of names ([notify] repeat-failed)."""

from __future__ import annotations

from acmems.notify.coalesce import FailedCoalescer, Repeats
from acmems.notify.mail_text import mail_body


def test_one_event_per_block_and_names_per_window_and_the_next_counts_the_held_ones() -> None:
    coalescer = FailedCoalescer(3600)
    names = ["www.example.org", "example.org"]
    assert coalescer.admit("team-a", names, 1000.0) == Repeats()
    assert coalescer.admit("team-a", list(reversed(names)), 1060.0) is None  # the same set, any order
    assert coalescer.admit("team-a", names, 1120.0) is None
    assert coalescer.admit("team-b", names, 1120.0) == Repeats()  # another block: its own
    assert coalescer.admit("team-a", ["mail.example.org"], 1120.0) == Repeats()  # other names: their own
    assert coalescer.admit("team-a", names, 4600.0) == Repeats(2, 1060.0)  # the window is over
    assert coalescer.admit("team-a", names, 4660.0) is None
    assert coalescer.admit("team-a", names, 8200.0) == Repeats(1, 4660.0)
    assert coalescer.admit("team-a", names, 11800.0) == Repeats()  # nothing held back since


def test_zero_sends_every_failure() -> None:
    coalescer = FailedCoalescer(0)
    assert coalescer.admit("team-a", ["a.example.org"], 1.0) == Repeats()
    assert coalescer.admit("team-a", ["a.example.org"], 2.0) == Repeats()


def test_the_mail_says_how_many_more_failed() -> None:
    body = mail_body(
        {"event": "failed", "names": ["a.example.org"], "repeats": 12, "repeats_since": "2026-12-05T17:00:00Z"}
    )
    assert "And 12 more failures since 2026-12-05T17:00:00Z" in body
