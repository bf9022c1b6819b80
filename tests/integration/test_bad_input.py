"""Bad input over real HTTP: each gets its documented answer, never a 500, and others are still served."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import FULL, AcmemsFactory, base_config, curl_post, hmac_header, make_csr, record
from tests.integration.rawhttp import raw_request
from tests.realservices import Acmems, Pebble, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def strict(acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path) -> Acmems:
    """acmems with short body and idle timeouts, so that slow clients are cut off quickly."""
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "s").replace(
        "max-size = 4k", "max-size = 4k\nbody-timeout = 1\nidle-timeout = 2"
    )
    return acmems_factory(config, port)


def post(port: int, headers: str, body: bytes = b"") -> tuple[int, bytes]:
    return raw_request(port, f"POST /sign HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)


def test_content_length_shapes(strict: Acmems) -> None:
    port = strict.mgmt_port
    figures = {}
    for label, headers, expected in [
        ("missing", "Connection: close\r\n", 411),
        ("negative", "Content-Length: -5\r\nConnection: close\r\n", 400),
        ("non-numeric", "Content-Length: lots\r\nConnection: close\r\n", 400),
        ("huge", "Content-Length: 99999999999999999999\r\nConnection: close\r\n", 400),
        ("2**40", "Content-Length: 1099511627776\r\nConnection: close\r\n", 413),
        ("over max-size", "Content-Length: 4097\r\nConnection: close\r\n", 413),
    ]:
        status, body = post(port, headers)
        figures[label] = status
        assert status == expected, (label, status, body)
        assert len(body.strip().splitlines()) <= 1
    record("content_length_shapes", **figures)


def test_body_shorter_than_announced_is_408(strict: Acmems) -> None:
    status, body = post(strict.mgmt_port, "Content-Length: 1000\r\n", b"-----BEGIN CERTIFICATE REQUEST-----\n")
    assert status == 408 and b"body-timeout" in body


def test_chunked_body_is_411(strict: Acmems) -> None:
    status, _ = post(
        strict.mgmt_port, "Transfer-Encoding: chunked\r\nConnection: close\r\n", b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert status == 411


def test_slowloris_is_cut_off_and_others_are_served(strict: Acmems) -> None:
    parts = [b"POST /sign HTTP/1.1\r\n", b"Host: x\r\n"] + [b"X-a: b\r\n"] * 30
    cut_after: list[int] = []  # how many parts each slow client got to send before acmems closed on it

    def trickle() -> None:
        sent = 0
        with socket.create_connection(("127.0.0.1", strict.mgmt_port), timeout=20) as sock:
            try:
                for part in parts:
                    sock.sendall(part)
                    sent += 1
                    time.sleep(0.5)  # not sync: the slow client's own pace is what is tested
                    sock.setblocking(False)
                    try:
                        if sock.recv(1) == b"":
                            break
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
                else:
                    sent = len(parts) + 1  # never cut off
            except (BrokenPipeError, ConnectionResetError):
                pass
        cut_after.append(sent)

    slow = [threading.Thread(target=trickle) for _ in range(5)]
    for thread in slow:
        thread.start()
    csr, _ = make_csr(["alongside.example.test"])
    assert curl_post(f"http://127.0.0.1:{strict.mgmt_port}/sign", csr)[0] == 200
    for thread in slow:
        thread.join()
    assert len(cut_after) == 5 and max(cut_after) <= len(parts)  # each closed before its headers were done
    record("slowloris", slow_clients=5, parts_sent_at_most=max(cut_after), others_served=True)


def test_1000_idle_connections_do_not_starve_others(strict: Acmems) -> None:
    sockets = []
    try:
        for _ in range(1000):
            sockets.append(socket.create_connection(("127.0.0.1", strict.mgmt_port), timeout=5))
        csr, _ = make_csr(["idle.example.test"])
        status, _, _ = curl_post(f"http://127.0.0.1:{strict.mgmt_port}/sign", csr)
        assert status == 200
    finally:
        for sock in sockets:
            sock.close()
    record("idle_connections", connections=1000, other_client_status=200)


def test_challenge_listener_odd_paths(strict: Acmems, pebble: Pebble) -> None:
    port = pebble.http_port
    for path, expected in [
        ("/.well-known/acme-challenge/../../sign", 404),
        ("/.well-known/acme-challenge/%2f..%2fsign", 404),
        ("/.well-known/acme-challenge/" + "A" * 4000, 404),
        ("/../../etc/passwd", 404),
        ("/", 404),
    ]:
        status, _ = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert status == expected, path
    status, _ = raw_request(
        port,
        b"POST /.well-known/acme-challenge/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 405
    status, _ = raw_request(port, b"GET /.well-known/acme-challenge/" + b"A" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert status in (400, 414)


def test_header_blocks_over_the_limits_are_431_on_every_listener(strict: Acmems, pebble: Pebble) -> None:
    # 64 fields of 1,600 bytes: each field is small, the block (~100 KB) is not
    filler = "".join(f"X-Filler-{i}: {'a' * 1600}\r\n" for i in range(64))
    csr, _ = make_csr(["big.example.test"])
    request = f"POST /sign HTTP/1.1\r\nHost: x\r\n{filler}Content-Length: {len(csr)}\r\nConnection: close\r\n\r\n"
    status, body = raw_request(strict.mgmt_port, request.encode() + csr)
    assert status == 431 and b"32768 bytes" in body and len(body.strip().splitlines()) == 1
    many = "".join(f"X-{i}: v\r\n" for i in range(150))
    status, body = post(strict.mgmt_port, many + "Content-Length: 0\r\nConnection: close\r\n")
    assert status == 431 and len(body.strip().splitlines()) == 1
    status, _ = post(strict.mgmt_port, "X-Big: " + "a" * 20000 + "\r\nContent-Length: 0\r\n")
    assert status == 431
    challenge = f"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: x\r\n{filler}Connection: close\r\n\r\n"
    assert raw_request(pebble.http_port, challenge.encode())[0] == 431
    good, _ = make_csr(["afterbig.example.test"])
    assert curl_post(f"http://127.0.0.1:{strict.mgmt_port}/sign", good)[0] == 200
    assert "Traceback" not in strict.log_text()


def test_malformed_authentication_headers_are_403_over_http(strict: Acmems) -> None:
    csr, _ = make_csr(["auth.sub.example2.test"])
    url = f"http://127.0.0.1:{strict.mgmt_port}/sign"
    good = hmac_header(csr)
    for header in [
        "x",
        "hmac",
        "hmac name=sha256",
        "hmac hash=00",
        "hmac name=md17, hash=00",
        "hmac name=sha256, hash=abc",
        "hmac name=sha256, hash=zz",
        good + ", name=sha256",
        "hmac name=, hash=",
        good.replace("sha256", "sha512"),
    ]:
        status, body, _ = curl_post(url, csr, {"Authentication": header})
        assert status == 403, (header, body)
    assert curl_post(url, csr, {"Authentication": hmac_header(b"another body")})[0] == 403
    assert curl_post(url, csr, {"Authentication": good})[0] == 200


def _csr(key: object, names: list[x509.GeneralName], cn: str | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_csr_shapes_over_http(strict: Acmems) -> None:
    import ipaddress

    url = f"http://127.0.0.1:{strict.mgmt_port}/sign"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    good, _ = make_csr(["shape.example.test"])
    broken = bytearray(x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER))
    broken[-3] ^= 0x55
    cases = {
        "not PEM": (b"hello world", 415),
        "another PEM type": (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 415),
        "broken signature": (x509.load_der_x509_csr(bytes(broken)).public_bytes(serialization.Encoding.PEM), 415),
        "RSA 1024": (_csr(rsa.generate_private_key(65537, 1024), [x509.DNSName("a.example.test")]), 415),
        "P-521": (_csr(ec.generate_private_key(ec.SECP521R1()), [x509.DNSName("a.example.test")]), 415),
        "IP SAN": (
            _csr(ec_key, [x509.DNSName("a.example.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            415,
        ),
        "e-mail SAN": (_csr(ec_key, [x509.RFC822Name("a@example.test")]), 415),
        "URI SAN": (_csr(ec_key, [x509.UniformResourceIdentifier("https://a.example.test/")]), 415),
        "trailing dot": (_csr(ec_key, [x509.DNSName("dot.example.test.")]), 415),
        "U-label": (_csr(ec_key, [], cn="bücher.example.test"), 415),
        "101 names": (_csr(ec_key, [x509.DNSName(f"n{i}.example.test") for i in range(101)]), 415),
        "upper case": (_csr(ec_key, [x509.DNSName("UPPER.Example.TEST")]), 200),
        "duplicates": (
            _csr(ec_key, [x509.DNSName("dup.example.test"), x509.DNSName("DUP.example.test")], "dup.example.test"),
            200,
        ),
        "punycode": (_csr(ec_key, [x509.DNSName("xn--bcher-kva.example.test")]), 200),
        "split across blocks": (
            _csr(ec_key, [x509.DNSName("a.example.test"), x509.DNSName("b.sub.example2.test")]),
            403,
        ),
    }
    for label, (body, expected) in cases.items():
        status, answer, _ = curl_post(url, body)
        assert status == expected, (label, answer)
    record("csr_shapes", cases=len(cases))


def test_random_requests_never_get_500_and_the_server_lives(strict: Acmems, pebble: Pebble) -> None:
    rng = random.Random(1313)
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "X" * 20, "", "GET /"]
    paths = [
        "/sign",
        "/",
        "/health",
        "/metrics",
        "/sign?x=1",
        "/sign/",
        "//sign",
        "/%00",
        "/" + "a" * 3000,
        "/.well-known/acme-challenge/x",
        "*",
        "http://other/sign",
        "/sign#frag",
    ]
    allowed = {0, 200, 400, 403, 404, 405, 408, 411, 413, 414, 415, 431, 501, 505}
    count = 300 if FULL else 120
    seen: dict[int, int] = {}
    for _ in range(count):
        port = rng.choice([strict.mgmt_port, pebble.http_port])
        # half of them well-formed HTTP/1.1, so that the handlers (not only the parser) are exercised
        sane = rng.random() < 0.5
        method = rng.choice(["GET", "POST", "PUT", "HEAD"]) if sane else rng.choice(methods)
        path = rng.choice(paths[:6]) if sane else rng.choice(paths)
        version = "HTTP/1.1" if sane else rng.choice(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", ""])
        headers = []
        for _ in range(rng.randrange(4)):
            headers.append(
                rng.choice(
                    [
                        "Content-Length: 5",
                        "Content-Length: x",
                        "Authentication: hmac",
                        "Expect: 100-continue",
                        "Transfer-Encoding: chunked",
                        "Host:",
                        "\x00: y",
                        "Authentication: " + "z" * rng.randrange(1, 200),
                    ]
                )
            )
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        if sane:
            headers = ["Host: x", "Connection: close", f"Content-Length: {len(body)}"] + [
                h for h in headers if h.startswith("Authentication")
            ]
        data = (
            f"{method} {path} {version}\r\n".encode() + "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body
        )
        status, _ = raw_request(port, data, timeout=5)
        seen[status] = seen.get(status, 0) + 1
        assert status in allowed, (data[:200], status)
    assert strict.proc is not None and strict.proc.poll() is None
    csr, _ = make_csr(["afterfuzz.example.test"])
    assert curl_post(f"http://127.0.0.1:{strict.mgmt_port}/sign", csr)[0] == 200
    assert "internal error" not in strict.log_text()
    record("http_fuzz", requests=count, statuses=dict(sorted(seen.items())))


def test_precheck_answers_before_the_body_is_sent(strict: Acmems) -> None:
    # With Expect: 100-continue the client waits: a refused client gets 403 and uploads nothing,
    # an accepted one gets 100 Continue and then its certificate.
    csr, _ = make_csr(["expect.example.test"])
    head = f"POST /sign HTTP/1.1\r\nHost: x\r\nContent-Length: {len(csr)}\r\nExpect: 100-continue\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", strict.mgmt_port), timeout=10, source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403"), answer
    with socket.create_connection(("127.0.0.1", strict.mgmt_port), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(csr)
        answer = b""
        while b"-----END CERTIFICATE-----" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
