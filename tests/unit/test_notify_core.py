"""The pure core of the notifications: events, thresholds, the watch, the retry schedule, the
outbox files, the pickups, the mail text, the states and the status page."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmems.core.event_kinds import DEFAULT_EVENTS, EVENT_KINDS, EventKind, parse_events
from acmems.core.thresholds import Span, Thresholds, parse_span
from acmems.http.status_page import PAGE_SIZE, render_status
from acmems.notify.events import make_event, rfc3339
from acmems.notify.mail_text import mail_body, mail_subject
from acmems.notify.outbox import GIVE_UP_AFTER, FileOutbox, retry_delay
from acmems.notify.pickups import Pickups, Track
from acmems.notify.senders import signature
from acmems.notify.status import STATES, certificate_state, status_rows
from acmems.notify.watch import Fetch, Watched, watch
from acmems.storage import CachedCertificate

T0 = datetime(2027, 1, 1, tzinfo=UTC)


def cert(
    lifetime: timedelta = timedelta(days=90), serial: int = 0xABC, requested: datetime | None = None, name: str = "a"
) -> CachedCertificate:
    not_after = T0 + lifetime
    return CachedCertificate(
        digest=f"d-{name}",
        names=(f"{name}.example.org", f"www.{name}.example.org"),
        serial=serial,
        not_before=T0,
        not_after=not_after,
        renew_at=not_after - lifetime / 3,
        last_requested=(requested or T0).timestamp(),
    )


# ----------------------------------------------------------------------------- events


def test_an_event_is_one_json_object_with_a_unique_id_and_lower_case_names_in_order() -> None:
    first = make_event(
        EventKind.ISSUED, ["WWW.Example.org", "example.org"], "web", T0, {"serial": "ab", "renewal": False}
    )
    second = make_event(EventKind.ISSUED, ["WWW.Example.org", "example.org"], "web", T0)
    body = json.loads(first.body)
    assert body["id"] == first.id != second.id
    assert body["event"] == "issued" and body["block"] == "web"
    assert body["names"] == ["www.example.org", "example.org"]
    assert body["time"] == "2027-01-01T00:00:00Z"
    assert body["serial"] == "ab" and body["renewal"] is False
    assert rfc3339(1803325304.9) == "2027-02-22T19:41:44Z"  # to the second (cut, not rounded), UTC


def test_the_events_filter_takes_commas_and_spaces_and_names_what_is_valid() -> None:
    assert parse_events("failed, overdue expiring") == {"failed", "overdue", "expiring"}
    assert "issued" not in DEFAULT_EVENTS and set(EVENT_KINDS) - DEFAULT_EVENTS == {"issued"}
    for bad in ("", " , ", "failed, expired"):
        with pytest.raises(ValueError) as info:
            parse_events(bad)
        assert "issued, failed, overdue, expiring, not-picked-up" in str(info.value)


def test_the_webhook_signature_is_the_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":"1"}'
    assert signature(b"key", body) == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- thresholds


def test_spans_are_shares_of_the_lifetime_or_fixed_times() -> None:
    assert parse_span("5%") == Span(0.05) == parse_span("0.05")
    assert parse_span("30m") == Span(1800, share=False) and parse_span("2d") == Span(172800, share=False)
    assert Span(0.1).of(timedelta(days=90)) == timedelta(days=9)
    assert Span(0.1).of(timedelta(days=6)) == timedelta(hours=14, minutes=24)
    for bad in ("5", "ten", "-1%", "3w"):
        with pytest.raises(ValueError):
            parse_span(bad)


# ----------------------------------------------------------------------------- the watch


@pytest.mark.parametrize("lifetime", [timedelta(days=90), timedelta(days=6), timedelta(seconds=30)])
def test_overdue_begins_after_the_grace_past_the_renewal_point_once_then_reminds(lifetime: timedelta) -> None:
    thresholds = Thresholds(remind_every=Span(0.10))
    entry = cert(lifetime, requested=T0 + lifetime / 2)
    item = Watched("file", "web", entry)
    before = entry.renew_at + lifetime * 0.049
    assert watch([item], before, thresholds, {})[0] == []
    begins = entry.renew_at + lifetime * 0.05
    events, marks = watch([item], begins, thresholds, {})
    assert [e.kind for e in events] == ["overdue"]
    body = json.loads(events[0].body)
    assert body["reminder"] is False and body["serial"] == "abc" and body["not_after"] == rfc3339(entry.not_after)
    assert watch([item], begins + lifetime * 0.05, thresholds, marks)[0] == []  # no reminder yet
    events, marks = watch([item], begins + lifetime * 0.10, thresholds, marks)
    assert [(e.kind, json.loads(e.body)["reminder"]) for e in events] == [("overdue", True)]
    events, marks = watch([], begins + lifetime * 0.11, thresholds, marks)  # renewed: the condition ended
    assert events == [] and marks == {}


def test_a_certificate_nobody_asks_for_is_neither_overdue_nor_expiring() -> None:
    entry = cert(timedelta(days=6), requested=T0 - timedelta(days=30))
    events, _ = watch([Watched("file", "web", entry)], entry.not_after - timedelta(hours=1), Thresholds(), {})
    assert events == []


def test_expiring_when_less_than_the_share_is_left() -> None:
    entry = cert(timedelta(days=90), requested=T0 + timedelta(days=80))
    item = Watched("file", "web", entry)
    kinds = {e.kind for e in watch([item], entry.not_after - timedelta(days=9, seconds=1), Thresholds(), {})[0]}
    assert "expiring" not in kinds
    kinds = {e.kind for e in watch([item], entry.not_after - timedelta(days=9), Thresholds(), {})[0]}
    assert kinds == {"overdue", "expiring"}


def test_not_picked_up_names_each_client_of_the_old_certificate_after_the_grace() -> None:
    lifetime = timedelta(days=6)
    entry = cert(lifetime, serial=2)
    renewed = (T0 + timedelta(hours=1)).timestamp()
    fetches = {
        "192.0.2.1": Fetch(1, renewed - 3600),  # fetched the old one, not since
        "192.0.2.2": Fetch(2, renewed + 60),  # has the new one
        "192.0.2.3": Fetch(1, renewed + 60),  # the old one after the renewal: a cache answered it? still not new
    }
    item = Watched("file", "web", entry, renewed, fetches)
    grace = (lifetime * 0.05).total_seconds()
    at = datetime.fromtimestamp(renewed + grace - 1, UTC)
    assert watch([item], at, Thresholds(), {})[0] == []
    events, marks = watch([item], datetime.fromtimestamp(renewed + grace, UTC), Thresholds(), {})
    assert [json.loads(e.body)["client"] for e in events] == ["192.0.2.1"]
    picked = Watched("file", "web", entry, renewed, {**fetches, "192.0.2.1": Fetch(2, renewed + grace + 5)})
    events, marks = watch([picked], datetime.fromtimestamp(renewed + grace + 10, UTC), Thresholds(), marks)
    assert events == [] and marks == {}


# ----------------------------------------------------------------------------- delivery


def test_retries_start_within_ten_seconds_and_double_to_an_hour_for_a_day() -> None:
    delays = [retry_delay(n) for n in range(1, 16)]
    assert delays[0] <= 10 and delays[1] == 2 * delays[0]
    assert max(delays) == 3600 and delays == sorted(delays)
    assert sum(delays) < GIVE_UP_AFTER


def test_the_outbox_keeps_the_exact_bytes_until_done(tmp_path: Path) -> None:
    asyncio.run(_outbox_roundtrip(tmp_path))


async def _outbox_roundtrip(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    event = make_event(EventKind.FAILED, ["a.example.org"], "web", T0, {"error": "x"})
    pending = await outbox.add('ops "main"', event, 100.0)
    later = pending.failed(110.0, "HTTP 500")
    await outbox.retry_later('ops "main"', later)
    (loaded,) = await outbox.load('ops "main"')
    assert loaded.body == event.body and loaded.attempts == 1 and loaded.next == 110.0 + retry_delay(1)
    folder = next((tmp_path / "outbox").iterdir())
    assert (folder / f"{event.id}.json").stat().st_mode & 0o777 == 0o600
    (folder / "broken.json").write_text("{")
    assert len(await outbox.load('ops "main"')) == 1  # the unreadable one is logged and left
    await outbox.done('ops "main"', loaded)
    assert await outbox.load('ops "main"') == []


def test_pickups_survive_their_json_form_and_forget_what_is_gone() -> None:
    pickups = Pickups()
    pickups.fetched("file", "d1", "192.0.2.1", 5, 100.0)
    pickups.issued("file", "d1", 6, 200.0, renewal=True)
    pickups.failed("file", "d2", "the CA refused", 300.0)
    again = Pickups.from_json(json.loads(json.dumps(pickups.to_json())))
    assert again.tracks == pickups.tracks
    again.prune(400.0, {"file": {"d1"}})
    assert set(again.tracks) == {("file", "d1")}
    with pytest.raises(ValueError):
        Pickups.from_json([{"storage": "file"}])


def test_a_mail_says_what_happened_the_ca_s_words_and_what_to_do() -> None:
    event = make_event(
        EventKind.FAILED,
        ["a.example.org"],
        "web",
        T0,
        {"error": "the CA refused: unauthorized: no", "attempt": 3, "next_attempt": "2027-01-01T00:04:00Z"},
    )
    fields = event.fields()
    assert mail_subject(fields) == "[acmems] certificate issuance FAILED for a.example.org"
    body = mail_body(fields)
    assert "the CA refused: unauthorized: no" in body and "2027-01-01T00:04:00Z" in body
    assert "tries again by itself" in body and event.id in body


# ----------------------------------------------------------------------------- states and the page


def test_states_problems_first() -> None:
    t = Thresholds()
    wanted = T0 + timedelta(days=70)
    entry = cert(requested=wanted)
    assert certificate_state(entry, T0 + timedelta(days=1), t, False, None) == "ok"
    assert certificate_state(entry, entry.renew_at, t, False, None) == "renewal due"
    assert certificate_state(entry, entry.renew_at, t, True, None) == "renewing"
    assert certificate_state(entry, entry.renew_at, t, False, "DNS refused") == "failed"
    assert certificate_state(entry, entry.renew_at + timedelta(days=5), t, False, None) == "overdue"
    assert certificate_state(entry, entry.not_after, t, False, None) == "expired"
    failing = Track(error="the CA refused: unauthorized")
    rows = status_rows(
        [("file", [cert(name="ok", requested=wanted), cert(name="bad", requested=wanted)]), ("b", [cert(name="f")])],
        T0 + timedelta(days=1),
        t,
        {("file", "d-bad")},
        {("b", "d-f"): failing},
    ).rows()
    assert [(r.entry.names[0], r.state) for r in rows] == [
        ("f.example.org", "failed"),
        ("bad.example.org", "renewing"),
        ("ok.example.org", "ok"),
    ]
    assert rows[0].error == "the CA refused: unauthorized"
    assert STATES[0] == "expired" and STATES[-1] == "ok"


def test_pages_over_several_states_are_cut_at_the_right_places() -> None:
    now = T0 + timedelta(days=89, hours=23)
    expired = [cert(name=f"x{i}", lifetime=timedelta(days=1)) for i in range(150)]
    due = [cert(name=f"d{i}") for i in range(30)]  # past the renewal point and the grace, still asked for
    fine = [cert(name=f"k{i}", lifetime=timedelta(days=900)) for i in range(120)]
    listed = sorted([*expired, *due, *fine], key=lambda e: e.renew_at)
    status = status_rows([("file", listed)], now, Thresholds(), set(), {})
    assert status.counts["expired"] == 150 and status.counts["overdue"] == 30 and status.counts["ok"] == 120
    everything = status.select()
    for start, stop in ((0, 100), (100, 200), (200, 300), (140, 160), (175, 185)):
        assert status.select(None, start, stop) == everything[start:stop]
    assert status.select("ok", 100, 200) == status.select("ok")[100:]


def test_the_status_page_pages_escapes_and_filters() -> None:
    entries = [cert(name=f"n{i:03}") for i in range(250)]
    evil = CachedCertificate("d-x", ("<script>alert(1)</script>.example.org",), 1, T0, T0 + timedelta(hours=1), T0)
    listed = sorted([*entries, evil], key=lambda e: e.renew_at)  # as a store gives them
    rows = status_rows([("file", listed)], T0 + timedelta(hours=2), Thresholds(), set(), {})
    first = render_status(rows, T0 + timedelta(hours=2)).decode()
    assert first.count("<tr data-state=") == PAGE_SIZE and "page 1 of 3" in first
    assert "<script>" not in first and "&lt;script&gt;" in first  # the expired one comes first, escaped
    last = render_status(rows, T0 + timedelta(hours=2), page=3).decode()
    assert last.count("<tr data-state=") == 51
    expired = render_status(rows, T0 + timedelta(hours=2), state="expired").decode()
    assert expired.count("<tr data-state=") == 1
    assert "<svg" in first and 'src="http' not in first and 'href="http' not in first  # no outside assets


def test_the_per_certificate_series_are_valid_exposition_text_and_stop_above_the_limit(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from acmems.core.settings import NotifySettings
    from acmems.notify.collector import NotifyCollector
    from acmems.notify.notifier import Notifier
    from acmems.notify.state import FileState

    entries = [cert(name=f"n{i}", requested=T0) for i in range(3)]
    entries.append(CachedCertificate("d-q", ('we"ird\\.example.org',), 9, T0, T0 + timedelta(days=1), T0))
    notifier = Notifier(NotifySettings(metrics_certificates=4), FileOutbox(tmp_path), FileState(tmp_path / "s"))
    collector = NotifyCollector(notifier, lambda: [("file", entries)], lambda: len(entries))
    families = {f.name: f for f in text_string_to_metric_families(collector.certificate_series().decode())}
    expiry = families["acmems_certificate_expiry_timestamp_seconds"]
    assert {s.labels["name"] for s in expiry.samples} == {
        "n0.example.org",
        "n1.example.org",
        "n2.example.org",
        'we"ird\\.example.org',
    }
    assert all(s.labels["storage"] == "file" for s in expiry.samples)
    assert len(families["acmems_certificate_last_pickup_timestamp_seconds"].samples) == 3  # the one never fetched: none
    entries.append(cert(name="n5"))
    assert collector.certificate_series() == b""  # above metrics-certificates: only the totals
