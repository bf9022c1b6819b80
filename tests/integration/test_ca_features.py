"""Current CA features against Pebble 2.10: profiles, ARI renewal windows, proactive renewal with
``replaces``, short-lived certificates, revocation."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests import ini, waits
from tests.conftest import AcmemsFactory, curl_post, hmac_header, make_csr
from tests.realservices import Acmems, Bind, Pebble, ServiceError, free_port, wait_for

pytestmark = pytest.mark.integration
DAY = 86400
PROFILES = {"default": 90 * DAY, "shortlived": 6 * DAY, "tiny": 15}


@pytest.fixture(scope="module")
def profile_ca(tmp_path_factory: pytest.TempPathFactory, bind: Bind) -> Iterator[Pebble]:
    ca = Pebble(tmp_path_factory.mktemp("profile-pebble"), bind.port, free_port(), profiles=PROFILES).start()
    directory = json.loads(ca.get("/dir", mgmt=False))
    if "renewalInfo" not in directory or "profiles" not in directory.get("meta", {}):
        ca.stop()
        # a missing capability fails the run: a green run must have tested ARI and profiles
        pytest.fail("this Pebble offers no ARI or profiles: Pebble 2.10 is needed (make test installs it)")
    yield ca
    ca.stop()


def config(ca: Pebble, tmp_path: Path, port: int, interval: str = "0") -> str:
    return ini.ini(
        ini.account(ca, tmp_path / "account", profile="default"),
        ini.mgmt(port, renewal_interval=interval),
        ini.http01("http", ca.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("short", ["*.example.test"], hmac_key="k", profile="shortlived"),
        ini.auth("tiny", ["tiny*.example.test"], ip="127.0.0.1", profile="tiny"),
        ini.auth("long", ["*.example.test"], ip="127.0.0.1"),
    )


def lifetime(chain: bytes) -> datetime.timedelta:
    leaf = x509.load_pem_x509_certificate(chain)
    return leaf.not_valid_after_utc - leaf.not_valid_before_utc


def _url(server: Acmems) -> str:
    return f"http://127.0.0.1:{server.mgmt_port}/sign"


def test_profile_per_block_and_the_cache_keys_on_it(
    acmems_factory: AcmemsFactory, profile_ca: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(config(profile_ca, tmp_path, port), port)
    csr, _ = make_csr(["profiled.example.test"])
    status, long_chain, _ = curl_post(_url(server), csr)  # block "long": the account's profile "default"
    assert status == 200, long_chain
    status, short_chain, _ = curl_post(_url(server), csr, {"Authentication": hmac_header(csr, "k")})
    assert status == 200, short_chain
    assert abs(lifetime(long_chain).total_seconds() - 90 * DAY) < 120
    assert abs(lifetime(short_chain).total_seconds() - 6 * DAY) < 120
    # the same CSR under each profile is its own cached certificate
    assert curl_post(_url(server), csr)[1] == long_chain
    assert curl_post(_url(server), csr, {"Authentication": hmac_header(csr, "k")})[1] == short_chain
    assert server.log_text().count("issued a certificate") == 2


def test_unknown_profile_is_refused_at_start_naming_the_offered_ones(profile_ca: Pebble, tmp_path: Path) -> None:
    port = free_port()
    text = config(profile_ca, tmp_path, port).replace("profile = shortlived", "profile = forever")
    server = Acmems(tmp_path / "acmems", text, port)
    with pytest.raises(ServiceError):
        server.start(timeout=waits.START)
    assert server.proc is not None and server.proc.returncode == 1
    assert "profile 'forever' is not offered" in server.log_text()
    assert "it offers: default, shortlived, tiny" in server.log_text()


@pytest.mark.slow
def test_short_lived_certificates_are_cached_for_two_thirds_of_their_life(
    acmems_factory: AcmemsFactory, profile_ca: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(config(profile_ca, tmp_path, port), port)
    csr, _ = make_csr(["tiny1.example.test"])
    status, first, _ = curl_post(_url(server), csr)
    assert status == 200, first
    leaf = x509.load_pem_x509_certificate(first)
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert life.total_seconds() == pytest.approx(15, abs=2)
    assert curl_post(_url(server), csr)[1] == first  # cached
    renew_at = leaf.not_valid_after_utc - life / 3
    until_due = max(0.0, (renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()) + 0.5
    time.sleep(until_due)  # not sync: the event is a clock moment, the certificate's renewal time
    status, second, _ = curl_post(_url(server), csr)
    assert status == 200 and second != first  # renewed after two thirds of its life
    assert server.log_text().count("issued a certificate") == 2


def test_ari_window_in_the_past_renews_in_the_background_with_replaces(
    acmems_factory: AcmemsFactory, profile_ca: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(config(profile_ca, tmp_path, port, interval="1"), port)
    csr, _ = make_csr(["ari.example.test"])
    status, first, _ = curl_post(_url(server), csr)
    assert status == 200, first
    now = datetime.datetime.now(datetime.UTC)
    window = {
        "suggestedWindow": {
            "start": (now - datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    leaf_pem = first.split(b"\n\n")[0].decode()
    body = json.dumps({"certificate": leaf_pem, "ariResponse": json.dumps(window)}).encode()
    import ssl

    context = ssl.create_default_context(cafile=str(profile_ca.ca_bundle))
    request = urllib.request.Request(f"https://127.0.0.1:{profile_ca.mgmt_port}/set-renewal-info/", data=body)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200
    wait_for(
        lambda: "renewed ari.example.test ahead of its clients" in server.log_text(),
        # the renewer's next pass; and once more after its backoff if Pebble had not yet indexed the
        # certificate named in `replaces` (see test_one_renewal_when_two_instances_see_the_same_certificate_due)
        waits.after(10.0, 1.0) + waits.RENEWAL_RETRY,
        "background renewal",
    )
    assert "replaces" in server.log_text()
    # sent with `replaces`; or, where Pebble cannot find the certificate named (its index race, or a
    # serial whose DER has a leading zero byte), ordered again without it, saying so
    assert "is a replacement of" in profile_ca.log.read_text() or "ordering it without replaces" in server.log_text()
    status, second, _ = curl_post(_url(server), csr)
    assert status == 200 and second != first  # the client's next POST is a cache hit on the new one
    assert server.log_text().count("outcome=cached") >= 1


def test_revocation_shows_at_the_ca_and_leaves_the_cache(
    acmems_factory: AcmemsFactory, profile_ca: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(config(profile_ca, tmp_path, port), port)
    csr, _ = make_csr(["revoke.example.test"])
    status, chain, _ = curl_post(_url(server), csr)
    assert status == 200
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(chain)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "acmems",
            "revoke",
            str(server.config),
            "--cert",
            str(cert_file),
            "--reason",
            "keyCompromise",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Removed it from 1 cache entry" in result.stdout
    serial = x509.load_pem_x509_certificate(chain).serial_number
    status_text = profile_ca.get(f"/cert-status-by-serial/{serial:x}").decode()
    assert "Revoked" in status_text or "revoked" in status_text
    # A running acmems checks the files of chains it keeps in memory once a second.
    wait_for(lambda: curl_post(_url(server), csr)[1] != chain, 10, "a new certificate for the CSR")
    status, after, _ = curl_post(_url(server), csr)
    assert status == 200 and after != chain


_ARI_REQUEST = re.compile(r"^Pebble (\S+ \S+) GET /draft-ietf-acme-ari-03/renewalInfo/", re.M)


@pytest.mark.slow
def test_renewal_info_per_minute_spreads_the_ari_requests_over_passes(
    acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path
) -> None:
    # renewal-interval 2 s and 30 renewal-info requests a minute: one per pass, so the four new
    # certificates are asked about in four passes (each at least 1.8 s after the last, with its
    # jitter), never all in one; the default (300 a minute) would ask about all four in the first.
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    try:
        port = free_port()
        text = ini.ini(
            ini.account(ca, tmp_path / "account"),
            ini.mgmt(port, renewal_interval=2, renewal_info_per_minute=30),
            ini.http01("http", ca.http_port),
            ini.file_storage("file", tmp_path / "storage"),
            ini.auth("local", ["*.example.test"], ip="127.0.0.1"),
        )
        server = acmems_factory(text, port)
        for i in range(4):
            assert curl_post(_url(server), make_csr([f"ari{i}.example.test"])[0])[0] == 200
        wait_for(
            lambda: len(_ARI_REQUEST.findall(ca.log.read_text())) >= 4, waits.after(10.0, 4 * 2.2), "four ARI requests"
        )
        moments = [
            datetime.datetime.strptime(m, "%Y/%m/%d %H:%M:%S").timestamp()
            for m in _ARI_REQUEST.findall(ca.log.read_text())[:4]
        ]
        # three passes lie between the first and the fourth (Pebble logs whole seconds)
        assert moments[3] - moments[0] >= 3 * 1.8 - 1, moments
        assert len(set(moments)) >= 3, moments  # not several in one moment
    finally:
        ca.stop()
