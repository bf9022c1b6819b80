"""``type = dns01-lexicon`` for real: lexicon's ``powerdns`` provider against PowerDNS's HTTP API
(pdns-server, sqlite3 backend). Names under ``example.com`` on loopback: lexicon 3.25 cannot address
zones outside the public suffix list. Pebble asks a resolving BIND in front of PowerDNS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ini
from tests.conftest import _RUNNING, AcmemsFactory, curl_post, make_csr
from tests.dnsservers import PowerDns, resolving_pebble
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Pebble, free_port

pytestmark = pytest.mark.integration

ZONES = ("example.com", "acme.example.com")
RECORDS = {
    "example.com": "acme IN NS ns.example.com.\n_acme-challenge.www IN CNAME www.acme.example.com.\n",
}


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PowerDns]:
    server = PowerDns(tmp_path_factory.mktemp("pdns"), ZONES, records=RECORDS).start()
    _RUNNING.append(("pdns_server", server.log))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pdns_pebble(tmp_path_factory: pytest.TempPathFactory, pdns: PowerDns) -> Iterator[Pebble]:
    with resolving_pebble(tmp_path_factory.mktemp("pdns-pebble"), pdns.port, "example.com") as ca:
        _RUNNING.append(("pebble (pdns)", ca.log))
        yield ca


def lexicon_config(pebble: Pebble, pdns: PowerDns, tmp_path: Path, port: int, token: str | None = None) -> str:
    token_file = tmp_path / "pdns-token"
    token_file.write_text((token or pdns.api_key) + "\n")
    token_file.chmod(0o600)
    verification = ini.section(
        'verification "api"',
        {
            "type": "dns01-lexicon",
            "provider": "powerdns",
            "pdns-server": f"http://127.0.0.1:{pdns.api_port}",
            "auth-token-file": token_file,
            "dns-server": f"127.0.0.1:{pdns.port}",
            "ttl": 5,
            "timeout": 3,
            "propagation-timeout": 10,
        },
    )
    return ini.ini(
        ini.account(pebble, tmp_path / "account"),
        ini.mgmt(port, default_verification="api"),
        verification,
        ini.file_storage("file", tmp_path / "s"),
        ini.auth("api", ["*.example.com", "example.com"], ip="127.0.0.1"),
    )


def nothing_left(pdns: PowerDns) -> bool:
    return all(pdns.transfer(zone) == [] for zone in ZONES)


@pytest.fixture
def api_acmems(acmems_factory: AcmemsFactory, pdns_pebble: Pebble, pdns: PowerDns, tmp_path: Path) -> Acmems:
    (tmp_path / "account").mkdir()
    port = free_port()
    return acmems_factory(lexicon_config(pdns_pebble, pdns, tmp_path, port), port)


def test_issued_through_the_api_cname_and_sub_zone_included(
    api_acmems: Acmems, pdns_pebble: Pebble, pdns: PowerDns
) -> None:
    # www: a CNAME into acme.example.com; x.acme.example.com: in the sub-zone, which lexicon alone
    # would take for example.com; a wildcard and its apex: two values at one name at once.
    names = ["www.example.com", "x.acme.example.com", "*.y.example.com", "y.example.com"]
    status, body, _ = curl_post(f"http://127.0.0.1:{api_acmems.mgmt_port}/sign", make_csr(names)[0])
    assert status == 200, body
    assert_valid_chain(body, pdns_pebble, names)
    assert nothing_left(pdns)
    assert pdns.api_key not in api_acmems.log_text()


def test_the_values_go_to_the_zone_acmems_found(pdns: PowerDns, tmp_path: Path) -> None:
    import asyncio

    from acmems.challenges import make_solver
    from acmems.challenges.dns01_update import DnsUpdateSolver
    from acmems.config import settings_from_sources

    text = lexicon_config(Pebble(tmp_path / "unused", 0, 0), pdns, tmp_path, free_port())
    solver = make_solver(settings_from_sources([("t.ini", text)]).verifications["api"])
    assert isinstance(solver, DnsUpdateSolver)

    async def scenario() -> None:
        await solver.present("x.acme.example.com", "t", "in-the-sub-zone")
        await solver.present("www.example.com", "t", "through-the-cname")
        assert pdns.transfer("acme.example.com") == [
            ("_acme-challenge.x.acme.example.com", "in-the-sub-zone"),
            ("www.acme.example.com", "through-the-cname"),
        ]
        assert pdns.transfer("example.com") == []  # nothing in the parent zone
        await solver.cleanup("x.acme.example.com", "t", "in-the-sub-zone")
        await solver.cleanup("www.example.com", "t", "through-the-cname")

    asyncio.run(scenario())
    assert nothing_left(pdns)


def test_a_wrong_token_is_a_502_naming_the_provider_and_no_secret(
    acmems_factory: AcmemsFactory, pdns_pebble: Pebble, pdns: PowerDns, tmp_path: Path
) -> None:
    (tmp_path / "account").mkdir()
    port = free_port()
    wrong = "wrong-token-0123456789"
    server = acmems_factory(lexicon_config(pdns_pebble, pdns, tmp_path, port, token=wrong), port)
    status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", make_csr(["denied.example.com"])[0])
    assert status == 502, body
    assert b"the powerdns API (lexicon) refused the add of _acme-challenge.denied.example.com TXT" in body
    assert b"HTTP 401" in body
    assert wrong.encode() not in body and wrong not in server.log_text()
    assert nothing_left(pdns)


def test_check_masks_the_token_and_inline_credentials_are_refused(
    pdns_pebble: Pebble, pdns: PowerDns, tmp_path: Path
) -> None:
    config = tmp_path / "acmems.ini"
    config.write_text(lexicon_config(pdns_pebble, pdns, tmp_path, free_port()))
    checked = subprocess.run(
        [sys.executable, "-m", "acmems", "check", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "provider = powerdns (dns-lexicon), options:" in checked.stdout and "auth_token = ***" in checked.stdout
    assert pdns.api_key not in checked.stdout
    inline = config.read_text().replace(f"auth-token-file = {tmp_path / 'pdns-token'}", "auth-token = inline")
    config.write_text(inline)
    refused = subprocess.run(
        [sys.executable, "-m", "acmems", "check", str(config)], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "give 'auth-token-file = PATH'" in refused.stderr and "inline" not in refused.stderr


def test_dns_check_tries_the_api(pdns_pebble: Pebble, pdns: PowerDns, tmp_path: Path) -> None:
    config = tmp_path / "acmems.ini"
    config.write_text(lexicon_config(pdns_pebble, pdns, tmp_path, free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "acmems", "dns-check", str(config), "www.example.com", "--try"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "_acme-challenge.www.example.com -> www.acme.example.com" in result.stdout
    assert "TXT goes to www.acme.example.com in zone acme.example.com at lexicon:powerdns" in result.stdout
    assert "probe added and deleted: ok (at lexicon:powerdns)" in result.stdout
    assert pdns.api_key not in result.stdout + result.stderr
    assert nothing_left(pdns)
