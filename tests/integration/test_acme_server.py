"""[acme-server]: acmems as an RFC 8555 server, tried with real ACME clients (certbot from PyPI,
lego and Caddy from Debian) against acmems in front of the session Pebble."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography import x509

from tests import ini
from tests.acme_clients import AcmeSite, certbot, certbot_issue, eab_key
from tests.conftest import AcmemsFactory, metric
from tests.realservices import Pebble

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
    server = acmems_factory(site.config(pebble, *_blocks()), site.mgmt_port)
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
    # the events and the log name the ACME account and its block
    log = server.log_text()
    assert re.search(r"new ACME account \S+ for auth block 'team'", log)
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
