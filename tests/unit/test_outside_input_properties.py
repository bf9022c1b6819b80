"""Property tests of the parsers of outside input that the other modules do not cover: what the CA
answers (Retry-After, the PEM chain), the dns-persist-01 TXT value, a worker's report, and every
state file read back (the saved index, the rate log, the DNS journal, the outbox, the pickups).

Each asserts a property of a successful parse (a round trip, bounds, idempotence) as well as
"parses, or raises our own error; never anything else"."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import itertools
import json
import tempfile
from pathlib import Path

import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acmems.ca.problems import MAX_RETRY_AFTER, format_chain, parse_retry_after
from acmems.challenges.dns_chain import MAX_HOPS, Chain, ChainError, CnameWalk
from acmems.challenges.dns_persist import parse_persist, persist_matches, persist_record
from acmems.challenges.dns_servers import UPDATE_ANSWERS
from acmems.core.event_kinds import EventKind
from acmems.core.rate_limits import Event
from acmems.errors import CaError
from acmems.notify.events import make_event
from acmems.notify.outbox import FileOutbox
from acmems.notify.pickups import Pickups
from acmems.storage.base import CachedCertificate
from acmems.storage.dns_journal import DnsRecord, PendingJournal
from acmems.storage.file_index import read_saved, write_saved
from acmems.storage.rate_log import FileRateLog
from acmems.workers.messages import WorkerReport
from tests.unit.test_storage_and_renewal import certificate

NOW = 1_900_000_000.0
SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){1,3}", fullmatch=True)
text = st.text(st.characters(codec="utf-8"), max_size=200)


# --------------------------------------------------------------------------- the CA's answers


@given(st.integers(min_value=0, max_value=10**400))
def test_retry_after_in_seconds_is_exact_below_the_cap_and_the_cap_above(seconds: int) -> None:
    parsed = parse_retry_after(str(seconds), NOW)
    assert parsed == (MAX_RETRY_AFTER if seconds > MAX_RETRY_AFTER else float(seconds))


@given(st.integers(min_value=-10 * 86400, max_value=20 * 86400))
def test_retry_after_as_an_http_date_round_trips_to_the_seconds_from_now(offset: int) -> None:
    when = datetime.datetime.fromtimestamp(NOW + offset, datetime.UTC)
    parsed = parse_retry_after(email.utils.format_datetime(when, usegmt=True), NOW)
    assert parsed == min(max(0.0, float(offset)), MAX_RETRY_AFTER)


@given(text)
def test_any_retry_after_is_none_or_within_bounds(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or 0.0 <= parsed <= MAX_RETRY_AFTER


_CERTIFICATES = [
    certificate(
        datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC), datetime.datetime(2027, 4, 1, tzinfo=datetime.UTC), n
    ).decode()
    for n in (1, 2, 3)
]
_separators = st.sampled_from(["", "\n", "\n\n", "\r\n", "  \n"])


@given(st.lists(st.sampled_from(range(3)), min_size=1, max_size=4), st.lists(_separators, min_size=5, max_size=5))
def test_a_chain_keeps_its_certificates_in_order_and_formatting_it_again_changes_nothing(
    order: list[int], separators: list[str]
) -> None:
    sent = "".join(separators[i] + _CERTIFICATES[n] for i, n in enumerate(order))
    formatted = format_chain(sent)
    blocks = [b for b in formatted.decode().split("\n\n") if b]
    assert [b.strip() for b in blocks] == [_CERTIFICATES[n].strip() for n in order]
    assert format_chain(formatted.decode()) == formatted


@given(text)
def test_any_text_from_the_ca_is_a_chain_or_our_error(value: str) -> None:
    try:
        formatted = format_chain(value)
    except CaError as exc:
        assert exc.status == 502
        return
    assert formatted.startswith(b"-----BEGIN CERTIFICATE-----")


# ------------------------------------------------------------------------ dns-persist-01 TXT


_issuers = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,8}){1,2}", fullmatch=True)
_uris = st.from_regex(r"https://[a-z0-9.]{1,20}/acct/[0-9]{1,8}", fullmatch=True)


@given(_issuers, _uris, st.booleans())
def test_a_persist_record_reads_back_as_what_was_written(issuer: str, uri: str, wildcard: bool) -> None:
    record = persist_record(issuer, uri, wildcard=wildcard)
    value = parse_persist(record)
    assert value is not None and value.issuer == issuer and value.params["accounturi"] == uri
    assert persist_matches(record, (issuer.upper() + ".",), uri, wildcard=wildcard)
    assert not persist_matches(record, (issuer,), uri + "0", wildcard=wildcard)


@given(text)
def test_any_txt_value_parses_or_is_none(value: str) -> None:
    parsed = parse_persist(value)
    assert parsed is None or (parsed.issuer and not any(c.isspace() for c in parsed.issuer))


def test_a_txt_value_of_only_a_dot_names_no_issuer() -> None:
    assert parse_persist(".") is None and parse_persist(" . ; accounturi=x") is None  # found by the property


# ---------------------------------------------------------------------------- worker reports


_digests = st.from_regex(r"[0-9a-f]{8,96}", fullmatch=True)
_fetched = st.tuples(
    st.sampled_from(["file", "shared"]),
    _digests,
    st.ip_addresses().map(str),
    st.integers(min_value=1, max_value=2**159).map(lambda s: format(s, "x")),
    st.floats(min_value=0, max_value=4e9),
)
_reports = st.builds(
    WorkerReport,
    st.integers(min_value=1, max_value=64),
    st.booleans(),
    st.dictionaries(st.integers(min_value=100, max_value=599), st.floats(min_value=0, max_value=1e9), max_size=5),
    st.floats(min_value=0, max_value=1e9),
    st.dictionaries(st.sampled_from(["file", "shared"]), st.lists(_digests, max_size=3).map(tuple), max_size=2),
    st.lists(_fetched, max_size=4).map(tuple),
)


@given(_reports)
def test_a_worker_report_reads_back_as_sent(report: WorkerReport) -> None:
    assert WorkerReport.from_json(report.to_json()) == report


@given(
    st.binary(max_size=300)
    | st.recursive(st.none() | st.integers() | text, st.lists, max_leaves=10).map(
        lambda v: json.dumps({"worker": 1, "requests": {"200": v}, "fetched": v}).encode()
    )
)
def test_any_report_reads_or_is_a_value_error(data: bytes) -> None:
    try:
        report = WorkerReport.from_json(data)
    except ValueError:
        return
    assert report.worker >= 1 and all(100 <= s <= 599 for s in report.requests)


# ------------------------------------------------------------------------------ state files


def _entry(digest: str, serial: int, names: list[str], profile: str | None) -> CachedCertificate:
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    end = start + datetime.timedelta(days=90)
    return CachedCertificate(digest, tuple(names), serial, start, end, end, profile=profile)


@SOME
@given(
    st.dictionaries(
        _digests,
        st.tuples(
            st.integers(min_value=1, max_value=2**159),
            st.lists(names, min_size=1, max_size=3),
            st.none() | st.sampled_from(["shortlived", "tiny"]),
            st.integers(min_value=0, max_value=2**63),
        ),
        max_size=8,
    )
)
def test_the_saved_index_reads_back_as_written(entries: dict[str, tuple[int, list[str], str | None, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        written = [(_entry(d, serial, n, profile), mtimes) for d, (serial, n, profile, mtimes) in entries.items()]
        write_saved(Path(folder), written)
        read = {saved.digest: saved for saved in read_saved(Path(folder))}
    assert set(read) == set(entries)
    for entry, mtimes in written:
        saved = read[entry.digest]
        assert (saved.serial, saved.names, saved.profile, saved.mtimes) == (
            entry.serial,
            entry.names,
            entry.profile,
            mtimes,
        )
        assert (saved.not_before, saved.not_after) == (entry.not_before, entry.not_after)


@SOME
@given(st.binary(max_size=400))
def test_a_damaged_saved_index_yields_only_well_formed_entries(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / ".acmems-index.json").write_bytes(b'{"version":4}\n' + data)
        for saved in read_saved(Path(folder)):  # never raises
            assert isinstance(saved.digest, str) and isinstance(saved.serial, int)


_events = st.builds(
    Event,
    st.floats(min_value=NOW - 7 * 86400, max_value=NOW),
    st.sampled_from(["order", "certificate"]),
    st.lists(names, min_size=1, max_size=3).map(lambda n: ",".join(sorted(n))),
    st.lists(names, max_size=2).map(tuple),
)


@SOME
@given(st.dictionaries(st.sampled_from(["https://a/dir", "https://b/dir"]), st.lists(_events, max_size=5), max_size=2))
def test_the_rate_log_reads_back_as_recorded(recorded: dict[str, list[Event]]) -> None:
    async def scenario(path: Path) -> dict[str, list[Event]]:
        log = FileRateLog(path)
        for account, events in recorded.items():
            for event in events:
                await log.record(account, event)
        again = FileRateLog(path)
        return {account: await again.events(account) for account in recorded}

    with tempfile.TemporaryDirectory() as folder:
        read = asyncio.run(scenario(Path(folder) / "rate-events.json"))
    for account, events in recorded.items():
        assert sorted(read[account], key=lambda e: e.at) == sorted(events, key=lambda e: e.at)


@SOME
@given(st.binary(max_size=300))
def test_a_damaged_rate_log_counts_afresh(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rate-events.json"
        path.write_bytes(data)
        events = asyncio.run(FileRateLog(path).events("https://a/dir"))
    assert all(isinstance(e, Event) for e in events)


_records = st.builds(
    DnsRecord,
    st.sampled_from(["127.0.0.1", "::1"]),
    st.integers(min_value=1, max_value=65535),
    names,
    names.map(lambda n: "_acme-challenge." + n),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43, max_size=43),
)


@SOME
@given(st.lists(_records, max_size=6), st.data())
def test_the_dns_journal_reads_back_every_value_still_listed(records: list[DnsRecord], data: st.DataObject) -> None:
    removed = data.draw(st.sets(st.sampled_from(records))) if records else set()

    async def scenario(path: Path) -> list[DnsRecord]:
        journal = PendingJournal(path)
        for record in records:
            await journal.add(record)
        for record in removed:
            await journal.remove(record)
        return await PendingJournal(path).records()

    with tempfile.TemporaryDirectory() as folder:
        listed = asyncio.run(scenario(Path(folder) / "dns01-pending.json"))
    still = {r for r in records if records.count(r) > (1 if r in removed else 0)}
    assert set(listed) == still


@SOME
@given(st.binary(max_size=300))
def test_a_damaged_dns_journal_starts_a_new_one(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dns01-pending.json"
        path.write_bytes(data)
        listed = asyncio.run(PendingJournal(path).records())
    assert all(isinstance(r, DnsRecord) for r in listed)


@SOME
@given(st.lists(st.tuples(st.sampled_from(list(EventKind)), st.lists(names, min_size=1, max_size=2)), max_size=5))
def test_the_outbox_reads_back_each_event_byte_for_byte(events: list[tuple[EventKind, list[str]]]) -> None:
    async def scenario(folder: Path) -> tuple[list[bytes], list[bytes]]:
        outbox = FileOutbox(folder)
        made = [make_event(kind, n, "block", NOW) for kind, n in events]
        for event in made:
            await outbox.add("ops", event, NOW)
        return [e.body for e in made], [p.body for p in await FileOutbox(folder).load("ops")]

    with tempfile.TemporaryDirectory() as folder:
        sent, kept = asyncio.run(scenario(Path(folder)))
    assert sorted(kept) == sorted(sent)


@SOME
@given(st.binary(max_size=300))
def test_a_damaged_outbox_file_is_left_and_the_others_read(data: bytes) -> None:
    async def scenario(folder: Path) -> int:
        outbox = FileOutbox(folder)
        await outbox.add("ops", make_event(EventKind.ISSUED, ["a.example.org"], "b", NOW), NOW)
        (next((folder).rglob("*.json")).parent / "damaged.json").write_bytes(data)
        return len(await FileOutbox(folder).load("ops"))

    with tempfile.TemporaryDirectory() as folder:
        assert asyncio.run(scenario(Path(folder))) in (1, 2)  # the good one always; the damaged one if it parses


@SOME
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["file", "shared"]),
            _digests,
            st.ip_addresses().map(str),
            st.integers(min_value=1, max_value=2**64),
            st.floats(min_value=NOW - 86400, max_value=NOW),
        ),
        max_size=6,
    )
)
def test_the_pickups_read_back_as_saved(fetches: list[tuple[str, str, str, int, float]]) -> None:
    pickups = Pickups()
    for storage, digest, client, serial, when in fetches:
        pickups.fetched(storage, digest, client, serial, when)
    again = Pickups.from_json(json.loads(json.dumps(pickups.to_json())))
    assert again.tracks == pickups.tracks


@given(st.recursive(st.none() | st.booleans() | st.integers() | text, lambda c: st.lists(c) | st.dictionaries(text, c)))
def test_any_saved_pickups_read_or_are_a_value_error(raw: object) -> None:
    try:
        pickups = Pickups.from_json(raw)
    except ValueError:
        return
    assert all(isinstance(k, tuple) and len(k) == 2 for k in pickups.tracks)


def test_a_retry_after_of_a_few_hundred_digits_is_the_cap_not_an_overflow() -> None:
    assert parse_retry_after("9" * 400, NOW) == MAX_RETRY_AFTER  # OverflowError before
    with pytest.raises(ValueError):
        int("9" * 5000)  # what Python itself refuses is still only "not a number" here:
    assert parse_retry_after("9" * 5000, NOW) == MAX_RETRY_AFTER


# ------------------------------------------------------------------- DNS answers: the CNAME walk


def _cname(owner: str, target: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner + ".", 60, "IN", "CNAME", target + ".")


def _walk(start: str, links: dict[str, str], per_answer: int) -> Chain:
    """Drive a :class:`CnameWalk` against a server that knows ``links`` and answers up to
    ``per_answer`` hops of the chain in one answer (a server that follows it inside its zone)."""
    walk = CnameWalk(start)
    for _ in range(MAX_HOPS + 3):
        answer: list[dns.rrset.RRset] = []
        name = walk.query
        while name in links and len(answer) < per_answer:
            answer.append(_cname(name, links[name]))
            name = links[name]
        chain = walk.feed(dns.rcode.NOERROR, answer)
        if chain is not None:
            return chain
    raise AssertionError("the walk never ended")


_labels = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), min_size=14, max_size=14, unique=True)


@given(_labels, st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=4))
def test_a_cname_chain_is_followed_to_its_end_or_refused_past_eight_hops(
    labels: list[str], length: int, per_answer: int
) -> None:
    names = [f"_acme-challenge.{label}.example.test" for label in labels[: length + 1]]
    links = dict(itertools.pairwise(names))
    if length > MAX_HOPS:
        with pytest.raises(ChainError, match=f"more than {MAX_HOPS} CNAMEs"):
            _walk(names[0], links, per_answer)
        return
    chain = _walk(names[0], links, per_answer)
    assert chain.name == names[0] and list(chain.hops) == names[1:] and chain.target == names[-1]


@given(_labels, st.integers(min_value=1, max_value=7), st.data())
def test_a_cname_loop_is_refused_naming_the_loop(labels: list[str], length: int, data: st.DataObject) -> None:
    names = [f"{label}.example.test" for label in labels[: length + 1]]
    links = dict(itertools.pairwise(names))
    links[names[-1]] = names[data.draw(st.integers(min_value=0, max_value=length - 1))]  # back into the chain
    with pytest.raises(ChainError, match="CNAME loop"):
        _walk(names[0], links, data.draw(st.integers(min_value=1, max_value=3)))


@given(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED, dns.rcode.NOTAUTH]))
def test_an_answer_without_a_cname_ends_the_walk_where_it_is(rcode: dns.rcode.Rcode) -> None:
    walk = CnameWalk("_acme-challenge.www.example.test")
    assert walk.feed(rcode, []) == Chain("_acme-challenge.www.example.test")


@given(st.sampled_from(list(dns.rcode.Rcode)))
def test_every_update_rcode_has_one_line_that_says_what_to_do(rcode: dns.rcode.Rcode) -> None:
    text = UPDATE_ANSWERS.get(dns.rcode.to_text(rcode), "the update failed; see its log")
    assert text and "\n" not in text
