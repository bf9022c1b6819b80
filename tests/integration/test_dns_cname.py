"""DNS-01 by CNAME delegation against a real BIND 9: ``_acme-challenge.<name>`` in a zone acmems may
not change points into ``acme.corp.test``, the one zone its key may update. Pebble asks a resolving
BIND in front of it (it does not follow CNAMEs itself). After every order a zone transfer shows no
challenge value left."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmems.challenges.dns01_update import DnsUpdateSolver, PendingJournal
from acmems.config import settings_from_sources
from acmems.core.settings import DnsUpdateVerification
from acmems.errors import DnsUpdateError
from tests import ini
from tests.conftest import _RUNNING, AcmemsFactory, curl_post, make_csr
from tests.dnsservers import resolving_pebble
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Bind, Pebble, free_port

pytestmark = pytest.mark.integration

LONG = "".join(f"l{i} IN CNAME l{i + 1}\n" for i in range(1, 9)) + 'l9 IN TXT "end"\n'
CORP = (
    "acme IN NS ns.corp.test.\n"
    "_acme-challenge.www IN CNAME www.acme.corp.test.\n"
    "_acme-challenge.chain IN CNAME hop1.corp.test.\nhop1 IN CNAME hop2.corp.test.\n"
    "hop2 IN CNAME chain.acme.corp.test.\n"
    "_acme-challenge.loop IN CNAME loop2\nloop2 IN CNAME _acme-challenge.loop\n"
    "_acme-challenge.outside IN CNAME outside.locked.test.\n"
    "_acme-challenge.wild IN CNAME wild.acme.corp.test.\n"
    "_acme-challenge.long IN CNAME l1\n" + LONG + "dname IN DNAME acme.corp.test.\n"
)
ZONES = {"corp.test": CORP, "acme.corp.test": "", "locked.test": ""}
LOCKED = ("corp.test", "locked.test")


@pytest.fixture(scope="module")
def corp_bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    server = Bind(tmp_path_factory.mktemp("corp-bind"), ZONES, locked=LOCKED).start()
    _RUNNING.append(("named (corp)", server.log))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corp_pebble(tmp_path_factory: pytest.TempPathFactory, corp_bind: Bind) -> Iterator[Pebble]:
    with resolving_pebble(tmp_path_factory.mktemp("corp-pebble"), corp_bind.port, "corp.test") as ca:
        _RUNNING.append(("pebble (corp)", ca.log))
        yield ca


@pytest.fixture(scope="module")
def corp_account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corp-account")


def corp_config(pebble: Pebble, account: Path, port: int, storage: Path, bind: Bind, **extra: str) -> str:
    return ini.ini(
        ini.account(pebble, account),
        ini.mgmt(port, default_verification="dns"),
        ini.dns01("dns", bind, ttl=5, timeout=2, propagation_timeout=10, **extra),
        ini.file_storage("file", storage),
        ini.auth("dns", ["*.corp.test", "corp.test"], ip="127.0.0.1"),
    )


@pytest.fixture(scope="module")
def corp_acmems(
    corp_pebble: Pebble, corp_account: Path, corp_bind: Bind, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Acmems]:
    port = free_port()
    directory = tmp_path_factory.mktemp("corp-acmems")
    server = Acmems(directory, corp_config(corp_pebble, corp_account, port, directory / "s", corp_bind), port)
    server.start()
    _RUNNING.append(("acmems (corp)", server.log))
    yield server
    server.stop()


def no_values_left(bind: Bind) -> bool:
    """A zone transfer of every zone shows no TXT record but the test's own ("end")."""
    assert ("l9.corp.test", "end") in bind.transfer("corp.test")  # the transfer does show TXT records
    return all(value == "end" for zone in bind.zones for _, value in bind.transfer(zone))


def sign(server: Acmems, names: list[str]) -> tuple[int, bytes]:
    status, body, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", make_csr(names)[0])
    return status, body


@pytest.mark.parametrize(
    "names",
    [["www.corp.test"], ["chain.corp.test"], ["*.wild.corp.test", "wild.corp.test"]],
    ids=["one-hop", "chain-of-three", "wildcard-and-apex"],
)
def test_issued_through_the_cname_and_nothing_left(
    corp_acmems: Acmems, corp_pebble: Pebble, corp_bind: Bind, names: list[str]
) -> None:
    status, body = sign(corp_acmems, names)
    assert status == 200, body
    assert_valid_chain(body, corp_pebble, names)
    assert no_values_left(corp_bind)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("loop.corp.test", b"CNAME loop: _acme-challenge.loop.corp.test -> loop2.corp.test -> _acme-challenge.loop"),
        ("long.corp.test", b"more than 8 CNAMEs from _acme-challenge.long.corp.test"),
        ("x.dname.corp.test", b"DNAME dname.corp.test -> acme.corp.test; acmems does not follow DNAME"),
        (
            "outside.corp.test",
            b"_acme-challenge.outside.corp.test is a CNAME to outside.locked.test "
            b"(_acme-challenge.outside.corp.test -> outside.locked.test): DNS server",
        ),
        ("plain.corp.test", b"REFUSED to the add of _acme-challenge.plain.corp.test TXT in zone corp.test"),
    ],
    ids=["loop", "nine-hops", "dname", "target-in-a-locked-zone", "no-cname-in-a-locked-zone"],
)
def test_unusable_chains_are_a_502_naming_it_and_leave_nothing(
    corp_acmems: Acmems, corp_bind: Bind, name: str, says: bytes
) -> None:
    status, body = sign(corp_acmems, [name])
    assert status == 502, body
    assert says in body, body
    assert len(body.strip().splitlines()) == 1
    if name == "outside.corp.test":
        assert b"zone locked.test" in body
    assert no_values_left(corp_bind)


def test_follow_cname_no_writes_at_the_name_itself(
    acmems_factory: AcmemsFactory, corp_pebble: Pebble, corp_account: Path, corp_bind: Bind, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(
        corp_config(corp_pebble, corp_account, port, tmp_path / "s", corp_bind, follow_cname="no"), port
    )
    status, body = sign(server, ["www.corp.test"])
    # The CNAME is not followed: the update goes to _acme-challenge.www.corp.test in corp.test, which
    # the key may not change.
    assert status == 502, body
    assert b"REFUSED to the add of _acme-challenge.www.corp.test TXT in zone corp.test" in body
    assert no_values_left(corp_bind)


def _solver(bind: Bind, journal: Path) -> DnsUpdateSolver:
    settings = settings_from_sources(
        [
            (
                "t.ini",
                f'[verification "d"]\ntype = dns01-dnsUpdate\ndns-server = 127.0.0.1:{bind.port}\n'
                f"tsig-key-file = {bind.key_file}\ntimeout = 2\npropagation-timeout = 5\n",
            )
        ]
    )
    verification = settings.verifications["d"]
    assert isinstance(verification, DnsUpdateVerification)
    return DnsUpdateSolver(verification, PendingJournal(journal))


def test_wildcard_and_apex_values_sit_side_by_side_at_the_target(corp_bind: Bind, tmp_path: Path) -> None:
    solver = _solver(corp_bind, tmp_path / "journal.json")

    async def scenario() -> None:
        await solver.present("wild.corp.test", "t1", "apex-value")
        await solver.present("*.wild.corp.test", "t2", "wildcard-value")
        assert sorted(corp_bind.txt("wild.acme.corp.test")) == ["apex-value", "wildcard-value"]
        journal = sorted((r.name, r.zone, r.value) for r in await solver.journal.records())
        assert journal == [
            ("wild.acme.corp.test", "acme.corp.test", "apex-value"),
            ("wild.acme.corp.test", "acme.corp.test", "wildcard-value"),
        ]
        await solver.cleanup("wild.corp.test", "t1", "apex-value")
        assert corp_bind.txt("wild.acme.corp.test") == ["wildcard-value"]
        await solver.cleanup("*.wild.corp.test", "t2", "wildcard-value")

    asyncio.run(scenario())
    assert no_values_left(corp_bind)
    assert (tmp_path / "journal.json").read_text() == "[]"


def test_cleanup_uses_the_journal_not_a_new_lookup(corp_bind: Bind, tmp_path: Path) -> None:
    # The value went to the target of the CNAME; a crash leaves it and its journal line. The next
    # run deletes it at the journal's name and zone, even though nothing points there any more.
    solver = _solver(corp_bind, tmp_path / "journal.json")
    asyncio.run(solver.present("www.corp.test", "t", "left-by-a-crash"))
    assert corp_bind.txt("www.acme.corp.test") == ["left-by-a-crash"]
    later = _solver(corp_bind, tmp_path / "journal.json")
    assert asyncio.run(later.recover()) == 1
    assert no_values_left(corp_bind)


def test_chain_errors_raise_before_anything_is_sent(corp_bind: Bind, tmp_path: Path) -> None:
    solver = _solver(corp_bind, tmp_path / "journal.json")
    with pytest.raises(DnsUpdateError, match="CNAME loop"):
        asyncio.run(solver.present("loop.corp.test", "t", "v"))
    assert (tmp_path / "journal.json").exists() is False
    assert no_values_left(corp_bind)


def dns_check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmems", "dns-check", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_dns_check_prints_the_chain_zone_and_server_and_tries_the_key(
    corp_pebble: Pebble, corp_account: Path, corp_bind: Bind, tmp_path: Path
) -> None:
    config = tmp_path / "acmems.ini"
    config.write_text(corp_config(corp_pebble, corp_account, free_port(), tmp_path / "s", corp_bind))
    result = dns_check(config, "www.corp.test", "*.wild.corp.test", "--try")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "_acme-challenge.www.corp.test -> www.acme.corp.test" in out
    assert f"zone acme.corp.test at 127.0.0.1:{corp_bind.port}" in out
    assert "_acme-challenge.wild.corp.test -> wild.acme.corp.test" in out
    assert out.count("probe added and deleted: ok") == 2
    assert corp_bind.key_secret not in out + result.stderr
    assert no_values_left(corp_bind)

    bad = dns_check(config, "outside.corp.test", "loop.corp.test", "--try")
    assert bad.returncode == 1
    assert "outside.locked.test" in bad.stdout and "zone locked.test" in bad.stdout and "REFUSED" in bad.stdout
    assert "CNAME loop" in bad.stdout
    assert no_values_left(corp_bind)
