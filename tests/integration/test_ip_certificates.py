"""IP-address certificates (an auth block's ``address`` networks), validated by HTTP-01 at the address
itself: Pebble connects to 127.0.0.1 on its HTTP port, where this test's acmems listens."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import ini
from tests.conftest import AcmemsFactory, curl_post
from tests.realservices import Pebble, free_port

pytestmark = pytest.mark.integration


def _csr(sans: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def _config(pebble: Pebble, account_dir: Path, tmp_path: Path, port: int, hosts: list[str], networks: list[str]) -> str:
    """The challenge listener on the CA's HTTP port at each of ``hosts``; certificates for ``networks``."""
    return ini.ini(
        ini.account(pebble, account_dir),
        ini.mgmt(port),
        ini.section('verification "http"', {"type": "http01", "listener": [f"{h}:{pebble.http_port}" for h in hosts]}),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("hosts", ["*.example.test"], ip="127.0.0.1", address=networks),
    )


def test_an_address_inside_a_block_s_network_gets_a_certificate(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = _config(pebble, account_dir, tmp_path, port, ["127.0.0.1"], ["127.0.0.0/8", "2001:db8::/32"])
    server = acmems_factory(config, port)
    url = f"http://127.0.0.1:{port}/sign"
    loopback = ipaddress.ip_address("127.0.0.1")
    status, chain, _ = curl_post(url, _csr([x509.IPAddress(loopback), x509.DNSName("ip.example.test")]))
    assert status == 200, chain
    leaf = x509.load_pem_x509_certificate(chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [loopback]
    assert san.get_values_for_type(x509.DNSName) == ["ip.example.test"]
    # an address outside every block's networks: 403, like a name outside the globs
    status, body, _ = curl_post(url, _csr([x509.IPAddress(ipaddress.ip_address("198.51.100.7"))]))
    assert status == 403 and b"198.51.100.7" in body
    assert re.search(r"names=\S*127\.0\.0\.1\S* outcome=issued status=200", server.log_text())


def test_an_ipv6_address_gets_a_certificate_validated_at_the_address(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = _config(pebble, account_dir, tmp_path, port, ["127.0.0.1", "[::1]"], ["::1/128"])
    server = acmems_factory(config, port)
    loopback = ipaddress.ip_address("::1")
    status, chain, _ = curl_post(f"http://127.0.0.1:{port}/sign", _csr([x509.IPAddress(loopback)]))
    assert status == 200, chain
    leaf = x509.load_pem_x509_certificate(chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [loopback]
    assert f"http://[::1]:{pebble.http_port}/.well-known/acme-challenge/" in pebble.log.read_text()  # checked there
    assert re.search(r"names=\S*::1\S* outcome=issued status=200", server.log_text())
