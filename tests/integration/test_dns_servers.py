"""RFC 2136 + TSIG against three real primaries: BIND 9, Knot DNS and PowerDNS (sqlite3 backend).

Each issues through Pebble (asking that server), takes every TSIG algorithm, and each way it can
refuse (REFUSED, NOTAUTH, NOTZONE, BADSIG, BADKEY, BADTIME) is one line that says what to fix. After
every success and failure a zone transfer shows no challenge value left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import dns.message
import pytest

from acmems.challenges.dns01_update import DnsUpdateSolver, PendingJournal
from acmems.config import settings_from_sources
from acmems.core.settings import DnsUpdateVerification
from acmems.errors import DnsUpdateError
from tests import ini
from tests.conftest import _RUNNING, curl_post, make_csr
from tests.dnsservers import ALGORITHMS, Knot, PowerDns
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Bind, Pebble, free_port

pytestmark = pytest.mark.integration

ZONES = ("example.test", "sub.example2.test", "locked.test")


class Primary(Protocol):
    port: int
    secrets: dict[str, str]  # algorithm -> secret of its key acme-<algorithm>
    log: Path

    def key_setting(self, algorithm: str = ...) -> str: ...
    def transfer(self, zone: str) -> list[tuple[str, str]]: ...
    def txt(self, name: str) -> list[str]: ...
    def stop(self) -> None: ...


def start_primary(kind: str, directory: Path) -> Primary:
    if kind == "bind":
        return Bind(directory, dict.fromkeys(ZONES, ""), locked=("locked.test",)).start()
    if kind == "knot":
        return Knot(directory, ZONES, locked=("locked.test",)).start()
    return PowerDns(directory, ZONES, locked=("locked.test",)).start()


@pytest.fixture(scope="module", params=["bind", "knot", "powerdns"])
def primary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Primary]:
    server = start_primary(request.param, tmp_path_factory.mktemp(request.param))
    _RUNNING.append((request.param, server.log))
    yield server
    server.stop()


def nothing_left(server: Primary) -> bool:
    return all(server.transfer(zone) == [] for zone in ZONES)


def solver(server: Primary, extra: str = "", key: str | None = None) -> DnsUpdateSolver:
    text = f'[verification "d"]\ntype = dns01-dnsUpdate\n{key or server.key_setting()}timeout = 2\n'
    text += f"propagation-timeout = 5\n{extra}"
    verification = settings_from_sources([("t.ini", text)]).verifications["d"]
    assert isinstance(verification, DnsUpdateVerification)
    return DnsUpdateSolver(verification, PendingJournal(None))


def round_trip(solver: DnsUpdateSolver, server: Primary, identifier: str) -> None:
    async def scenario() -> None:
        await solver.present(identifier, "t1", "first-value")
        await solver.present(identifier, "t2", "second-value")  # added beside, never replacing
        assert sorted(server.txt("_acme-challenge." + identifier)) == ["first-value", "second-value"]
        await solver.cleanup(identifier, "t1", "first-value")
        assert server.txt("_acme-challenge." + identifier) == ["second-value"]
        await solver.cleanup(identifier, "t2", "second-value")

    asyncio.run(scenario())


def test_issues_through_the_server_and_leaves_nothing(primary: Primary, tmp_path: Path) -> None:
    pebble = Pebble(tmp_path / "pebble", primary.port, free_port()).start()
    try:
        port = free_port()
        config = ini.ini(
            ini.account(pebble, tmp_path / "account"),
            ini.mgmt(port, default_verification="dns"),
            ini.section('verification "dns"', {"type": "dns01-dnsUpdate", "ttl": 5, "timeout": 2})
            + primary.key_setting(),
            ini.file_storage("file", tmp_path / "s"),
            ini.auth("dns", ["*.test"], ip="127.0.0.1"),
        )
        (tmp_path / "account").mkdir()
        server = Acmems(tmp_path / "acmems", config, port).start()
        try:
            names = ["a.example.test", "*.w.sub.example2.test", "w.sub.example2.test"]
            status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", make_csr(names)[0])
            assert status == 200, body
            assert_valid_chain(body, pebble, names)
        finally:
            server.stop()
    finally:
        pebble.stop()
    assert nothing_left(primary)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_tsig_algorithm(primary: Primary, algorithm: str) -> None:
    round_trip(solver(primary, key=primary.key_setting(algorithm)), primary, f"{algorithm}.example.test")
    assert nothing_left(primary)


def test_md5_only_when_configured_and_with_a_warning(primary: Primary) -> None:
    assert solver(primary).warnings() == []
    weak = solver(primary, key=primary.key_setting("hmac-md5"))
    assert any("hmac-md5, which is weak" in w for w in weak.warnings())


def _skewed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        @staticmethod
        def time() -> float:
            return time.time() - 3600  # an hour behind the server

    monkeypatch.setattr(dns.message, "time", Clock)


Refusal = tuple[str, str, Callable[[Primary], str] | None, list[str]]  # name, block lines, key lines, says
REFUSALS: dict[str, Refusal] = {
    "badsig": (
        "wrong.example.test",
        "",
        lambda s: s.key_setting().replace(s.secrets["hmac-sha256"], "d3Jvbmc="),
        ["(NOTAUTH, BADSIG)", "check tsig-key-secret"],
    ),
    "badkey": (
        "unknown.example.test",
        "",
        lambda s: s.key_setting().replace("acme-hmac-sha256", "no-such-key"),
        ["(NOTAUTH, BADKEY)", "does not know key no-such-key"],
    ),
    "badtime": ("skewed.example.test", "", None, ["(NOTAUTH, BADTIME)", "NTP"]),
    "refused": ("x.locked.test", "", None, ["answered REFUSED", "in zone locked.test", "allow key acme-hmac-sha256"]),
    "notauth": (
        "x.example.test",
        "zone = elsewhere.test\n",
        None,
        ["answered", "primary of zone elsewhere.test"],
    ),
    "notzone": ("x.example.test", "zone = sub.example2.test\n", None, ["answered NOTZONE", "correct 'zone'"]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_is_one_line_saying_what_to_fix(
    primary: Primary, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    identifier, extra, key, says = REFUSALS[case]
    the_solver = solver(primary, extra, key(primary) if key else None)
    if case == "badtime":
        _skewed(monkeypatch)
    with pytest.raises(DnsUpdateError) as raised:
        asyncio.run(the_solver.present(identifier, "t", "refused-value"))
    message = raised.value.message
    if case == "refused" and isinstance(primary, Knot):
        # Knot answers a key its acl does not allow for the zone with NOTAUTH + BADKEY
        says = ["(NOTAUTH, BADKEY)", "zone locked.test", "the zone's acl"]
    if case in ("badsig", "badkey", "badtime") and isinstance(primary, PowerDns):
        # PowerDNS answers every TSIG failure with an unsigned REFUSED; its log tells which
        says = ["answered REFUSED", "PowerDNS also refuses a wrong tsig-key-secret"]
    assert "\n" not in message
    for part in says:
        assert part in message, message
    assert raised.value.kind.value == "DNS refused"
    assert nothing_left(primary)


def test_several_primaries_are_tried_in_order(primary: Primary, caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()  # nothing listens there
    key = f"dns-server = 127.0.0.1:{dead}\n" + primary.key_setting()
    with caplog.at_level(logging.INFO):
        round_trip(solver(primary, key=key), primary, "second-primary.example.test")
    assert f"127.0.0.1:{dead} cannot be reached" in caplog.text and "trying the next dns-server" in caplog.text
    assert nothing_left(primary)
