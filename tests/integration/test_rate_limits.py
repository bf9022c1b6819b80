"""Rate limits seen before the CA says so: a client that makes a new key and CSR for the same names
each time is refused (429, the limit and when it frees up) once the account's own count is reached,
also after a restart; re-posting the same CSR is a cache hit and never counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import ini
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.realservices import Pebble, free_port

pytestmark = pytest.mark.integration


def test_the_third_new_key_for_the_same_names_is_refused_before_the_ca_is_asked(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = ini.ini(
        ini.account(pebble, account_dir, **{"limit-duplicate-certificates": "2/1h"}),
        ini.mgmt(port),
        ini.http01("http", pebble.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test"], ip="127.0.0.1"),
    )
    url = f"http://127.0.0.1:{port}/sign"
    names = ["limited.example.test", "www.limited.example.test"]
    server = acmems_factory(config, port)
    first, _ = make_csr(names)
    assert curl_post(url, first)[0] == 200
    assert curl_post(url, first)[0] == 200  # the same CSR: a cache hit, not counted
    assert curl_post(url, make_csr(list(reversed(names)))[0])[0] == 200  # the same set of names, new key
    server.stop()
    again = acmems_factory(config, port, name="restarted")  # the count survives a restart
    issued_before = pebble.log.read_text().count("Issued certificate serial")
    status, body, headers = curl_post(url, make_csr(names)[0])
    assert status == 429, body
    assert b"limit-duplicate-certificates = 2/1h" in body and b"Keep the key and CSR" in body
    assert 3500 <= int(headers["retry-after"]) <= 3600
    assert pebble.log.read_text().count("Issued certificate serial") == issued_before  # the CA was not asked
    assert curl_post(url, first)[0] == 200  # the kept CSR still gets its certificate
    assert 'acmems_rate_limit_refusals_total{limit="limit-duplicate-certificates"} 1.0' in curl_metrics(again.mgmt_port)


def curl_metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _limited(pebble: Pebble, account_dir: Path, tmp_path: Path, port: int, **limits: str) -> str:
    return ini.ini(
        ini.account(pebble, account_dir, **limits),
        ini.mgmt(port),
        ini.http01("http", pebble.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test", "*.sub.example2.test"], ip="127.0.0.1"),
    )


def test_new_orders_and_registered_domains_are_counted_and_refused_over_their_limits(
    acmems_factory: AcmemsFactory, pebble: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    limits = {"limit-new-orders": "3/1h", "limit-registered-domain": "2/1h"}
    # an account of its own: the rate log is kept in the account's directory
    acmems_factory(_limited(pebble, tmp_path / "account", tmp_path, port, **limits), port)
    url = f"http://127.0.0.1:{port}/sign"
    assert curl_post(url, make_csr(["a.example.test"])[0])[0] == 200
    assert curl_post(url, make_csr(["b.example.test"])[0])[0] == 200
    status, body, _ = curl_post(url, make_csr(["c.example.test"])[0])  # a third of example.test
    assert status == 429 and b"limit-registered-domain = 2/1h" in body, body
    assert curl_post(url, make_csr(["a.sub.example2.test"])[0])[0] == 200  # another registered domain: order 3
    status, body, headers = curl_post(url, make_csr(["b.sub.example2.test"])[0])  # a fourth new order
    assert status == 429 and b"limit-new-orders = 3/1h" in body, body
    assert 0 < int(headers["retry-after"]) <= 3600
    metrics = curl_metrics(port)
    assert 'acmems_rate_limit_refusals_total{limit="limit-registered-domain"} 1.0' in metrics
    assert 'acmems_rate_limit_refusals_total{limit="limit-new-orders"} 1.0' in metrics


def test_the_letsencrypt_preset_refuses_a_sixth_certificate_for_the_same_names(
    acmems_factory: AcmemsFactory, pebble: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    acmems_factory(_limited(pebble, tmp_path / "account", tmp_path, port, **{"rate-limits": "letsencrypt"}), port)
    url = f"http://127.0.0.1:{port}/sign"
    names = ["preset.example.test"]
    for _ in range(5):
        assert curl_post(url, make_csr(names)[0])[0] == 200  # a new key each time
    status, body, headers = curl_post(url, make_csr(names)[0])
    assert status == 429 and b"limit-duplicate-certificates = 5/7d" in body, body
    assert 6 * 86400 < int(headers["retry-after"]) <= 7 * 86400
