"""DNS-01 through RFC 2136 updates to a real BIND 9 that takes only TSIG-signed TXT updates."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import textwrap
from pathlib import Path

import dns.query
import dns.tsig
import pytest

from acmems.challenges.dns01_update import build_update
from tests import ini
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Bind, Pebble, free_port

pytestmark = pytest.mark.integration


def dns_config(pebble: Pebble, account_dir: Path, port: int, storage: Path, verification: str) -> str:
    return ini.ini(
        ini.account(pebble, account_dir),
        ini.mgmt(port, default_verification="dns"),
        ini.dns01("dns", ttl=5, timeout=2, propagation_timeout=10).rstrip("\n") + "\n" + textwrap.dedent(verification),
        ini.file_storage("file", storage),
        ini.auth("dns", ["*.test", "example.test"], ip="127.0.0.1"),
    )


def key_file_setting(bind: Bind) -> str:
    return f"dns-server = 127.0.0.1:{bind.port}\ntsig-key-file = {bind.key_file}\n"


@pytest.fixture
def dns_acmems(acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, bind: Bind, tmp_path: Path) -> Acmems:
    port = free_port()
    return acmems_factory(dns_config(pebble, account_dir, port, tmp_path / "s", key_file_setting(bind)), port)


def _url(server: Acmems) -> str:
    return f"http://127.0.0.1:{server.mgmt_port}/sign"


def _no_challenge_records(bind: Bind, names: list[str]) -> bool:
    return all(bind.txt("_acme-challenge." + n.removeprefix("*.")) == [] for n in names)


@pytest.mark.parametrize(
    "names",
    [
        ["dns-single.example.test"],
        ["dns-a.example.test", "dns-b.example.test", "dns-c.sub.example2.test"],
        ["*.wild.example.test", "wild.example.test"],
        ["deep.in.sub.example2.test"],  # zone sub.example2.test: not a second-level domain
        ["*.example.test", "example.test"],  # wildcard of the zone apex itself
    ],
    ids=["single", "several-zones", "wildcard-and-apex", "third-level-zone", "zone-apex-wildcard"],
)
def test_dns01_issues_and_leaves_no_records(dns_acmems: Acmems, pebble: Pebble, bind: Bind, names: list[str]) -> None:
    csr, _ = make_csr(names)
    status, body, _ = curl_post(_url(dns_acmems), csr)
    assert status == 200, body
    assert_valid_chain(body, pebble, names)
    assert _no_challenge_records(bind, names)


def test_configured_zone_and_key_name_and_secret(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, bind: Bind, tmp_path: Path
) -> None:
    port = free_port()
    setting = (
        f"dns-server = 127.0.0.1:{bind.port}\nzone = sub.example2.test\n"
        f"tsig-key-name = {bind.key_name}\ntsig-key-secret = {bind.key_secret}\ntsig-algorithm = hmac-sha256\n"
    )
    server = acmems_factory(dns_config(pebble, account_dir, port, tmp_path / "s", setting), port)
    names = ["configured.sub.example2.test"]
    csr, _ = make_csr(names)
    status, body, _ = curl_post(_url(server), csr)
    assert status == 200, body
    assert_valid_chain(body, pebble, names)
    assert bind.key_secret not in server.log_text()


def test_wrong_tsig_secret_is_a_clear_502_and_nothing_is_issued(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, bind: Bind, tmp_path: Path
) -> None:
    port = free_port()
    wrong = base64.b64encode(b"w" * 32).decode()
    setting = f"dns-server = 127.0.0.1:{bind.port}\ntsig-key-name = {bind.key_name}\ntsig-key-secret = {wrong}\n"
    server = acmems_factory(dns_config(pebble, account_dir, port, tmp_path / "s", setting), port)
    csr, _ = make_csr(["badkey.example.test"])
    status, body, _ = curl_post(_url(server), csr)
    assert status == 502
    assert b"zone example.test" in body and b"TSIG" in body
    assert wrong.encode() not in body and wrong not in server.log_text()
    assert "issued a certificate" not in server.log_text()


def test_unsigned_update_refused_by_the_server(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, bind: Bind, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(
        dns_config(pebble, account_dir, port, tmp_path / "s", f"dns-server = 127.0.0.1:{bind.port}\n"), port
    )
    assert "without TSIG" in server.log_text()
    csr, _ = make_csr(["unsigned.example.test"])
    status, body, _ = curl_post(_url(server), csr)
    assert status == 502
    assert b"REFUSED" in body and b"zone example.test" in body


def test_dns_server_down_is_503_and_acmems_keeps_running(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    down = Bind(tmp_path / "bind-down").start()
    port = free_port()
    server = acmems_factory(dns_config(pebble, account_dir, port, tmp_path / "s", key_file_setting(down)), port)
    down.stop()
    csr, _ = make_csr(["down.example.test"])
    status, body, headers = curl_post(_url(server), csr)
    assert status == 503 and b"does not answer" in body
    assert int(headers["retry-after"]) > 0
    assert server.proc is not None and server.proc.poll() is None
    status, _, _ = curl_post(_url(server), csr)
    assert status == 503


def test_records_are_removed_after_a_failure_midway(dns_acmems: Acmems, bind: Bind) -> None:
    # The first name's record is added, the second name has no zone on this server: the order fails
    # and the first record must be deleted again.
    names = ["midway.example.test", "nozone.elsewhere.test"]
    csr, _ = make_csr(names)
    status, body, _ = curl_post(_url(dns_acmems), csr)
    assert status == 502, body
    assert b"not authoritative" in body
    assert _no_challenge_records(bind, ["midway.example.test"])


def test_records_left_by_a_killed_acmems_are_removed_at_the_next_start(
    acmems_factory: AcmemsFactory, pebble: Pebble, bind: Bind, tmp_path: Path
) -> None:
    account = tmp_path / "account"
    account.mkdir()
    # What a killed acmems leaves: a TXT value in the zone and its line in the journal.
    key = dns.tsig.Key(bind.key_name, bind.key_secret)
    name = "_acme-challenge.crashed.example.test"
    dns.query.tcp(
        build_update("example.test", name, "stale-value", 60, delete=False, key=key),
        "127.0.0.1",
        port=bind.port,
        timeout=5,
    )
    assert bind.txt(name) == ["stale-value"]
    (account / "dns01-pending.json").write_text(
        json.dumps(
            [{"server": "127.0.0.1", "port": bind.port, "zone": "example.test", "name": name, "value": "stale-value"}]
        )
    )
    port = free_port()
    server = acmems_factory(dns_config(pebble, account, port, tmp_path / "s", key_file_setting(bind)), port)
    assert bind.txt(name) == []
    assert "removed 1 _acme-challenge record" in server.log_text()
    assert json.loads((account / "dns01-pending.json").read_text()) == []


def test_ten_dns01_orders_in_one_zone_at_once(dns_acmems: Acmems, pebble: Pebble, bind: Bind) -> None:
    requests = [[f"par{i}.example.test", f"*.par{i}.example.test"] for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda names: (names, curl_post(_url(dns_acmems), make_csr(names)[0])), requests))
    for names, (status, body, _) in results:
        assert status == 200, body
        assert_valid_chain(body, pebble, names)
    assert _no_challenge_records(bind, [n for names in requests for n in names])


def test_check_servers_must_all_serve_the_record(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, bind: Bind, tmp_path: Path
) -> None:
    # The primary listed again as a check server: issued. A second server that never gets the record
    # (another BIND with its own copy of the zone): a clear 503 naming it, and nothing left behind.
    port = free_port()
    same = key_file_setting(bind) + f"check-server = 127.0.0.1:{bind.port}\n"
    server = acmems_factory(dns_config(pebble, account_dir, port, tmp_path / "s", same), port)
    csr, _ = make_csr(["checked.example.test"])
    status, body, _ = curl_post(_url(server), csr)
    assert status == 200, body
    other = Bind(tmp_path / "other-bind").start()
    try:
        port2 = free_port()
        lagging = key_file_setting(bind) + f"check-server = 127.0.0.1:{other.port}\n"
        config = dns_config(pebble, account_dir, port2, tmp_path / "s2", lagging).replace(
            "propagation-timeout = 10", "propagation-timeout = 1"
        )
        server2 = acmems_factory(config, port2, "lagging")
        csr2, _ = make_csr(["lagging.example.test"])
        status, body, _ = curl_post(_url(server2), csr2)
        assert status == 503
        assert f"127.0.0.1:{other.port} do not serve the new TXT record".encode() in body
        assert _no_challenge_records(bind, ["lagging.example.test"])
    finally:
        other.stop()


def test_a_cleanup_that_failed_is_retried_once_the_server_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import acmems.challenges.dns01_update as dns01
    from acmems.challenges.dns01_update import DnsUpdateSolver, PendingJournal
    from acmems.config import settings_from_sources
    from acmems.core.settings import DnsUpdateVerification
    from acmems.errors import DnsUpdateError

    monkeypatch.setattr(dns01, "_CLEANUP_RETRY_INTERVAL", 0.0)
    server = Bind(tmp_path / "bind").start()
    try:
        settings = settings_from_sources(
            [
                (
                    "t.ini",
                    f'[verification "d"]\ntype = dns01-dnsUpdate\n'
                    f"dns-server = 127.0.0.1:{server.port}\n"
                    f"tsig-key-file = {server.key_file}\ntimeout = 1\n",
                )
            ]
        )
        verification = settings.verifications["d"]
        assert isinstance(verification, DnsUpdateVerification)
        journal = PendingJournal(tmp_path / "journal.json")
        solver = DnsUpdateSolver(verification, journal)

        async def scenario() -> None:
            await solver.present("first.example.test", "t1", "value-one")
            server.stop()  # the DNS server goes away before the authorization is cleaned up
            with pytest.raises(DnsUpdateError):
                await solver.cleanup("first.example.test", "t1", "value-one")
            server.start()  # back, with its journal: the value is still served
            assert server.txt("_acme-challenge.first.example.test") == ["value-one"]
            await solver.present("second.example.test", "t2", "value-two")
            await solver.cleanup("second.example.test", "t2", "value-two")

        asyncio.run(scenario())
        assert server.txt("_acme-challenge.first.example.test") == []
        assert server.txt("_acme-challenge.second.example.test") == []
        assert asyncio.run(journal.records()) == []
    finally:
        server.stop()
