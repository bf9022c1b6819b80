"""The web server recipes of docs/webservers.md, each in front of real acmems and a real Pebble."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import AcmemsFactory, base_config, curl_post, make_csr
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Apache, Bind, HAProxy, Pebble, free_port

pytestmark = pytest.mark.integration


def _backend_acmems(factory: AcmemsFactory, ca: Pebble, tmp_path: Path, index: int, backend: int) -> Acmems:
    port = free_port()
    config = base_config(ca, tmp_path / "account", port, tmp_path / f"s{index}").replace(
        f"listener = 127.0.0.1:{ca.http_port}", f"listener = 127.0.0.1:{backend}"
    )
    return factory(config, port, f"acmems{index}")


def _issue(server: Acmems, ca: Pebble, name: str) -> None:
    csr, _ = make_csr([name])
    status, body, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", csr)
    assert status == 200, body
    assert_valid_chain(body, ca, [name])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_apache_mod_proxy_with_two_acmems(acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path) -> None:
    proxy_port = free_port()
    ca = Pebble(tmp_path / "pebble", bind.port, proxy_port).start()
    backends = [free_port(), free_port()]
    apache = Apache(tmp_path / "apache", proxy_port, backends).start()
    try:
        servers = [_backend_acmems(acmems_factory, ca, tmp_path, i, b) for i, b in enumerate(backends)]
        for index, server in enumerate(servers):  # the second holds its tokens: the 404 fallback is used
            _issue(server, ca, f"apache{index}.example.test")
        # Pebble checks each token three times, all through Apache
        access = (tmp_path / "apache" / "access.log").read_text()
        assert access.count("/.well-known/acme-challenge/") >= 6 and " 200" in access
        assert _status(f"http://127.0.0.1:{proxy_port}/.well-known/acme-challenge/unknown") == 404
    finally:
        apache.stop()
        ca.stop()


def test_haproxy_with_two_acmems_retrying_on_404(acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path) -> None:
    proxy_port = free_port()
    ca = Pebble(tmp_path / "pebble", bind.port, proxy_port).start()
    backends = [free_port(), free_port()]
    haproxy = HAProxy(tmp_path / "haproxy", proxy_port, backends).start()
    try:
        servers = [_backend_acmems(acmems_factory, ca, tmp_path, i, b) for i, b in enumerate(backends)]
        # several orders each, so that round robin sends validations to the acmems without the token
        for index, server in enumerate(servers):
            for n in range(3):
                _issue(server, ca, f"haproxy{index}-{n}.example.test")
    finally:
        haproxy.stop()
        ca.stop()
