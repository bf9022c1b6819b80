"""dns-persist-01 (``type = dns01-persist``) against Pebble 2.10 (issuer domain ``pebble.test``, its
``caaIdentities``) and the session BIND: ``acmems persist-record --publish`` adds the record once,
and every later order, wildcards included, changes nothing in DNS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ini
from tests.conftest import _RUNNING, AcmemsFactory, curl_post, make_csr
from tests.integration.chain import assert_valid_chain
from tests.realservices import ZONES, Bind, Pebble, free_port

pytestmark = pytest.mark.integration

ISSUER = "pebble.test"


@pytest.fixture(scope="module")
def persist_pebble(tmp_path_factory: pytest.TempPathFactory, bind: Bind) -> Iterator[Pebble]:
    ca = Pebble(tmp_path_factory.mktemp("persist-pebble"), bind.port, free_port(), caa_identities=[ISSUER]).start()
    _RUNNING.append(("pebble (persist)", ca.log))
    yield ca
    ca.stop()


def persist_config(pebble: Pebble, account: Path, port: int, storage: Path, dns: str) -> str:
    return ini.ini(
        ini.account(pebble, account),
        ini.mgmt(port, default_verification="persist"),
        ini.section('verification "persist"', {"type": "dns01-persist"}) + dns,
        ini.file_storage("file", storage),
        ini.auth("persist", ["*.example.test", "example.test"], ip="127.0.0.1"),
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmems", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def acme_challenge_values(bind: Bind) -> list[tuple[str, str]]:
    return [(n, v) for zone in ZONES for n, v in bind.transfer(zone) if n.startswith("_acme-challenge.")]


def test_published_once_then_every_order_needs_no_dns_change(
    acmems_factory: AcmemsFactory, persist_pebble: Pebble, bind: Bind, tmp_path: Path
) -> None:
    account = tmp_path / "account"
    account.mkdir()
    port = free_port()
    config = tmp_path / "acmems.ini"
    dns = f"dns-server = 127.0.0.1:{bind.port}\ntsig-key-file = {bind.key_file}\nttl = 5\n"
    config.write_text(persist_config(persist_pebble, account, port, tmp_path / "s", dns))
    server = acmems_factory(config.read_text(), port)  # registers the account
    uri = json.loads((account / "registration.json").read_text())["uri"]

    # Not yet published: a 502 that gives the exact record, and nothing is ordered blindly.
    status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", make_csr(["early.example.test"])[0])
    assert status == 502, body
    assert f'_validation-persist.early.example.test. TXT "{ISSUER}; accounturi={uri}"'.encode() in body

    shown = cli("persist-record", str(config), "p1.example.test", "*.w.example.test", "w.example.test")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f'_validation-persist.p1.example.test. IN TXT "{ISSUER}; accounturi={uri}"' in shown.stdout
    assert f'_validation-persist.w.example.test. IN TXT "{ISSUER}; accounturi={uri}; policy=wildcard"' in shown.stdout
    assert bind.txt("_validation-persist.p1.example.test") == []  # printing alone changes nothing

    published = cli("persist-record", str(config), "p1.example.test", "*.w.example.test", "--publish")
    assert published.returncode == 0, published.stdout + published.stderr
    assert published.stdout.count(f"published at 127.0.0.1:{bind.port} in zone example.test") == 2
    assert bind.txt("_validation-persist.p1.example.test") == [f"{ISSUER}; accounturi={uri}"]
    again = cli("persist-record", str(config), "p1.example.test", "--publish")
    assert "already published" in again.stdout
    assert bind.txt("_validation-persist.p1.example.test") == [f"{ISSUER}; accounturi={uri}"]

    before = sorted(n for zone in ZONES for n, _ in bind.transfer(zone))
    for names in (["p1.example.test"], ["*.w.example.test", "w.example.test"]):
        status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", make_csr(names)[0])
        assert status == 200, body
        assert_valid_chain(body, persist_pebble, names)
    assert acme_challenge_values(bind) == []
    assert sorted(n for zone in ZONES for n, _ in bind.transfer(zone)) == before  # no DNS change per order
    assert bind.key_secret not in shown.stdout + published.stdout + server.log_text()


def test_without_a_dns_server_the_ca_checks_and_says_what_is_missing(
    acmems_factory: AcmemsFactory, persist_pebble: Pebble, tmp_path: Path
) -> None:
    account = tmp_path / "account"
    account.mkdir()
    port = free_port()
    config = tmp_path / "acmems.ini"
    config.write_text(persist_config(persist_pebble, account, port, tmp_path / "s", ""))
    server = acmems_factory(config.read_text(), port)
    status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", make_csr(["unpublished.example.test"])[0])
    assert status == 421, body  # the CA's own check failed, as for any failed validation
    assert b"could not validate unpublished.example.test" in body and b"DNS-PERSIST-01" in body, body
    checked = cli("check", str(config))
    assert "no dns-server: the CA alone checks the _validation-persist records" in checked.stdout
    publish = cli("persist-record", str(config), "x.example.test", "--publish")
    assert "names no dns-server" in publish.stdout
    assert server.proc is not None and server.proc.poll() is None
