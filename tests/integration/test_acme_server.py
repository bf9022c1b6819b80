"""[acme-server]: acmems as an RFC 8555 server, tried with real ACME clients (certbot from PyPI,
lego and Caddy from Debian) against acmems in front of the session Pebble."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from tests import ini, waits
from tests.acme_clients import AcmeSite, certbot, certbot_issue, eab_key, lego
from tests.conftest import AcmemsFactory, metric
from tests.realservices import Bind, Pebble, free_port, spawn, tool, wait_for
from tests.receivers import Hook

pytestmark = pytest.mark.integration

TEAM_KEY = "team-secret-hmac-key-0123456789"


def _blocks() -> tuple[str, ...]:
    return (
        ini.auth("team", ["*.team.example.test"], hmac_key=TEAM_KEY, storage="file"),
        ini.auth("open", ["*.open.example.test"], ip="127.0.0.1", storage="file"),
    )


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> list[str]:
    return sorted(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


@pytest.fixture
def site(tmp_path: Path) -> AcmeSite:
    return AcmeSite.make(tmp_path / "site")


def test_certbot_with_eab_gets_allowed_names_is_refused_others_and_revokes(
    acmems_factory: AcmemsFactory, pebble: Pebble, site: AcmeSite, tmp_path: Path
) -> None:
    hook = Hook().start()
    notify = ini.section('notify "hook"', {"type": "webhook", "url": hook.url, "events": "issued, failed"})
    server = acmems_factory(site.config(pebble, *_blocks(), extra=[notify]), site.mgmt_port)
    state = tmp_path / "certbot"
    eab = ("--eab-kid", "team", "--eab-hmac-key", eab_key(TEAM_KEY))
    rc, out = certbot_issue(site, state, ["a.team.example.test", "www.a.team.example.test"], *eab, "--cert-name", "a")
    assert rc == 0, out
    leaf = _leaf(state / "conf" / "live" / "a" / "cert.pem")
    assert _names(leaf) == ["a.team.example.test", "www.a.team.example.test"]
    # issued by the upstream CA (Pebble), through acmems
    assert "Pebble" in leaf.issuer.rfc4514_string()
    # a name outside the team's block: refused with the identifiers named
    rc, out = certbot_issue(site, state, ["b.open.example.test"], *eab, "--cert-name", "b")
    assert rc != 0, out
    assert "not allowed for this account: b.open.example.test" in out, out
    # the log, the events, /status and acmems list name the ACME account and its block
    account = re.search(r"new ACME account (\S+) for auth block 'team'", server.log_text())
    assert account is not None
    (issued,) = hook.wait("issued")
    hook.stop()
    assert issued["block"] == "team" and issued["acme_account"] == account.group(1)
    status = urllib.request.urlopen(f"http://127.0.0.1:{site.mgmt_port}/status", timeout=10).read().decode()
    assert f"ACME account {account.group(1)}" in status
    listed = subprocess.run(
        [sys.executable, "-m", "acmems", "list", str(server.config)], capture_output=True, text=True, check=True
    ).stdout
    assert f"a.team.example.test, www.a.team.example.test  (ACME account {account.group(1)})" in listed
    # revoke through acmems: relayed to Pebble
    rc, out = certbot(
        site,
        state,
        "revoke",
        "--cert-path",
        str(state / "conf" / "live" / "a" / "cert.pem"),
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    assert rc == 0, out
    status = json.loads(pebble.get(f"/cert-status-by-serial/{leaf.serial_number:x}"))
    assert status["Status"] == "Revoked"
    assert metric(site.mgmt_port, 'acmems_acme_requests_total{resource="revoke-cert",status="200"}') == 1


def test_certbot_without_eab_binds_to_the_ip_block(
    acmems_factory: AcmemsFactory, pebble: Pebble, site: AcmeSite, tmp_path: Path
) -> None:
    acmems_factory(site.config(pebble, *_blocks()), site.mgmt_port)
    state = tmp_path / "certbot"
    rc, out = certbot_issue(site, state, ["c.open.example.test"], "--cert-name", "c")
    assert rc == 0, out
    assert _names(_leaf(state / "conf" / "live" / "c" / "cert.pem")) == ["c.open.example.test"]
    rc, out = certbot_issue(site, state, ["c.team.example.test"], "--cert-name", "c2")
    assert rc != 0 and "c.team.example.test" in out, out


WILD_KEY = "wild-secret-hmac-key-9876543210"


def test_lego_http_and_a_wildcard_through_a_dns01_block_renew_and_revoke(
    acmems_factory: AcmemsFactory, pebble: Pebble, bind: Bind, site: AcmeSite, tmp_path: Path
) -> None:
    wild = ini.auth("wild", ["lego.example.test", "*.lego.example.test"], hmac_key=WILD_KEY, verification="dns")
    dns = ini.dns01("dns", bind, ttl=5, timeout=2, propagation_timeout=10)
    acmems_factory(site.config(pebble, *_blocks(), wild, extra=[dns]), site.mgmt_port)
    solver = ("--http", "--http.port", f"127.0.0.1:{free_port()}")
    # an HTTP-01 block, with its EAB
    team = tmp_path / "lego-team"
    team_eab = ("--eab", "--kid", "team", "--hmac", eab_key(TEAM_KEY))
    rc, out = lego(site, team, *team_eab, *solver, "-d", "l.team.example.test", "run")
    assert rc == 0, out
    crt = team / "lego" / "certificates" / "l.team.example.test.crt"
    assert _names(_leaf(crt)) == ["l.team.example.test"]
    # a wildcard through the DNS-01 block (its own EAB: another account)
    wild_state = tmp_path / "lego-wild"
    wild_eab = ("--eab", "--kid", "wild", "--hmac", eab_key(WILD_KEY))
    names = ("-d", "lego.example.test", "-d", "*.lego.example.test")
    rc, out = lego(site, wild_state, *wild_eab, *solver, *names, "run")
    assert rc == 0, out
    wild_crt = wild_state / "lego" / "certificates" / "lego.example.test.crt"
    first = _leaf(wild_crt)
    assert _names(first) == ["*.lego.example.test", "lego.example.test"]
    # refused: a name of the other block
    rc, out = lego(site, wild_state, *wild_eab, *solver, "-d", "x.team.example.test", "run")
    assert rc != 0 and "x.team.example.test" in out and "rejectedIdentifier" in out, out
    # renew (forced: the certificate is far from due) gets a new certificate
    rc, out = lego(site, wild_state, *wild_eab, *solver, *names, "renew", "--days", "100000", "--no-random-sleep")
    assert rc == 0, out
    renewed = _leaf(wild_crt)
    assert renewed.serial_number != first.serial_number
    # revoke through acmems, relayed to Pebble
    rc, out = lego(site, team, *team_eab, *solver, "-d", "l.team.example.test", "revoke", "--reason", "1")
    assert rc == 0 and "revoked" in out.lower(), out
    archived = [p for p in (team / "lego" / "archives").glob("*.crt") if not p.name.endswith(".issuer.crt")]
    serial = _leaf(archived[0])
    status = json.loads(pebble.get(f"/cert-status-by-serial/{serial.serial_number:x}"))
    assert status["Status"] == "Revoked"


def test_caddy_serves_a_site_with_the_certificate_it_got_through_acmems(
    acmems_factory: AcmemsFactory, pebble: Pebble, site: AcmeSite, tmp_path: Path
) -> None:
    acmems_factory(site.config(pebble, *_blocks()), site.mgmt_port)
    home = tmp_path / "caddy"
    home.mkdir()
    https_port, http_port, admin = free_port(), free_port(), free_port()
    caddyfile = home / "Caddyfile"
    caddyfile.write_text(
        "{\n"
        f"\tadmin 127.0.0.1:{admin}\n\thttp_port {http_port}\n\thttps_port {https_port}\n"
        f"\tacme_ca {site.url}\n\tacme_ca_root {site.ca_file}\n"
        f"\tacme_eab {{\n\t\tkey_id team\n\t\tmac_key {eab_key(TEAM_KEY)}\n\t}}\n"
        f"\temail ops@example.test\n\tstorage file_system {{\n\t\troot {home / 'storage'}\n\t}}\n"
        "\tskip_install_trust\n\tdefault_bind 127.0.0.1\n}\n\n"
        'cdy.team.example.test {\n\trespond "hello from caddy"\n}\n'
    )
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    log = home / "caddy.log"
    proc = spawn([tool("caddy"), "run", "--config", str(caddyfile), "--adapter", "caddyfile"], log, env)
    try:

        def obtained() -> bool:
            text = log.read_text(errors="replace")
            if "could not get certificate from issuer" in text:
                raise AssertionError(f"caddy was refused: {text[-3000:]}")
            return "certificate obtained successfully" in text

        wait_for(obtained, waits.after(5), "caddy's certificate", proc, log)
        roots = tmp_path / "pebble-roots.pem"
        roots.write_bytes(pebble.roots_pem())
        context = ssl.create_default_context(cafile=str(roots))
        with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="cdy.team.example.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: cdy.team.example.test\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(4096):
                    answer += chunk
                peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        assert b"hello from caddy" in answer
        assert _names(peer) == ["cdy.team.example.test"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_name_acmems_orders_its_own_listener_certificate_and_a_client_trusts_it(
    acmems_factory: AcmemsFactory, pebble: Pebble, site: AcmeSite, tmp_path: Path
) -> None:
    own = ini.section(
        "acme-server",
        {"listener": f"127.0.0.1:{site.port}", "name": "acmems.team.example.test", "dir": tmp_path / "acme-dir"},
    )
    config = ini.ini(
        ini.account(pebble, site.directory / "account"),
        ini.mgmt(site.mgmt_port),
        ini.http01("http", pebble.http_port),
        ini.file_storage("file", site.directory / "storage"),
        *_blocks(),
        own,
    )
    acmems_factory(config, site.mgmt_port)
    assert (tmp_path / "acme-dir" / "listener-key.pem").stat().st_mode & 0o077 == 0
    roots = tmp_path / "pebble-roots.pem"
    roots.write_bytes(pebble.roots_pem())
    context = ssl.create_default_context(cafile=str(roots))  # the name and the chain are checked
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="acmems.team.example.test") as tls:
            tls.sendall(b"GET /directory HTTP/1.1\r\nHost: acmems.team.example.test\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["newAccount"] == "https://acmems.team.example.test/acme/new-account"


def test_certbot_preferred_profile_is_relayed_and_renews_when_acmems_renewal_info_says(
    acmems_factory: AcmemsFactory, bind: Bind, site: AcmeSite, tmp_path: Path
) -> None:
    # A Pebble with a short-lived profile: acmems renews its certificates after two thirds of 16 s, and
    # tells certbot (renewalInfo) to renew within the next 1.3 s; certbot asks only that (ARI).
    ca = Pebble(tmp_path / "pebble", bind.port, free_port(), profiles={"default": 90 * 86400, "shortlived": 16}).start()
    try:
        acmems_factory(site.config(ca, *_blocks()), site.mgmt_port)
        state = tmp_path / "certbot"
        eab = ("--eab-kid", "team", "--eab-hmac-key", eab_key(TEAM_KEY))
        rc, out = certbot_issue(
            site, state, ["p.team.example.test"], *eab, "--cert-name", "p", "--preferred-profile", "shortlived"
        )
        assert rc == 0, out
        first = _leaf(state / "conf" / "live" / "p" / "cert.pem")
        lifetime = first.not_valid_after_utc - first.not_valid_before_utc
        assert lifetime.total_seconds() <= 17  # the profile reached Pebble through acmems
        # acmems renews it from two thirds of its life; it suggests the first quarter of the rest to clients
        due_from = first.not_valid_after_utc - lifetime / 3
        window_end = due_from + (first.not_valid_after_utc - due_from) / 4

        def due() -> bool:
            return datetime.datetime.now(datetime.UTC) >= window_end

        wait_for(due, waits.after(1, lifetime.total_seconds()), "the end of acmems' renewal window")
        rc, out = certbot(site, state, "renew", "--no-random-sleep-on-renew", *eab)
        assert rc == 0, out
        assert "Certificate is due for renewal" in out or "Renewing an existing certificate" in out, out
        renewed = _leaf(state / "conf" / "live" / "p" / "cert.pem")
        assert renewed.serial_number != first.serial_number
        assert metric(site.mgmt_port, 'acmems_acme_requests_total{resource="renewal-info",status="200"}') >= 1
    finally:
        ca.stop()
