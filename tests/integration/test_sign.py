"""POST /sign end to end over HTTP-01 against the real Pebble, with real openssl, curl and wget."""

from __future__ import annotations

import concurrent.futures
import hashlib
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests import waits
from tests.conftest import AcmemsFactory, base_config, curl_post, hmac_header, make_csr
from tests.ini import HMAC_KEY
from tests.integration.chain import assert_valid_chain
from tests.realservices import Acmems, Bind, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration


def _url(server: Acmems, path: str = "/sign") -> str:
    return f"http://127.0.0.1:{server.mgmt_port}{path}"


def _issued(server: Acmems) -> int:
    return server.log_text().count("issued a certificate for")


def test_readme_client_commands_verbatim_with_wget_and_curl(acmems: Acmems, pebble: Pebble, tmp_path: Path) -> None:
    # The seed README's commands, typed as written (OpenSSL 3 prints HMAC-SHA2-256, so the sed
    # turns it into name=sha2-256, which acmems accepts).
    names = ["mail.sub.example2.test", "smtp.sub.example2.test"]
    script = textwrap.dedent(f"""\
        set -eu
        cd {tmp_path}
        KEY='{HMAC_KEY}'
        openssl genrsa 4096 > domain.key
        openssl req -new -sha256 -key domain.key -subj "/CN={names[0]}" -reqexts SAN \\
          -config <(cat /etc/ssl/openssl.cnf <(printf "[SAN]\\nsubjectAltName=DNS:{names[0]},DNS:{names[1]}")) \\
          > domain-201512.csr
        wget -q --post-file=domain-201512.csr --header="`openssl dgst -sha256 -hmac "$KEY" domain-201512.csr | sed -e 's/HMAC-\\(.*\\)(.*)= *\\(.*\\)/Authentication: hmac name=\\L\\1\\E, hash=\\2/'`" {_url(acmems)} -O - > domain-201512.pem
        curl -sSf --data-binary @domain-201512.csr -H "`openssl dgst -sha256 -hmac "$KEY" domain-201512.csr | sed -e 's/HMAC-\\(.*\\)(.*)= *\\(.*\\)/Authentication: hmac name=\\L\\1\\E, hash=\\2/'`" {_url(acmems)} > curl.pem
        """)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    chain = (tmp_path / "domain-201512.pem").read_bytes()
    assert_valid_chain(chain, pebble, names)
    # the key in the certificate is the client's key
    pub = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey"], input=chain.split(b"\n\n")[0], capture_output=True, check=True
    ).stdout
    own = subprocess.run(
        ["openssl", "pkey", "-pubout", "-in", str(tmp_path / "domain.key")], capture_output=True, check=True
    ).stdout
    assert pub == own
    assert (tmp_path / "curl.pem").read_bytes() == chain
    assert _issued(acmems) == 1


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_rsa_and_ec_csrs_get_certificates_for_exactly_their_names(acmems: Acmems, pebble: Pebble, key: str) -> None:
    names = [f"{key}-www.example.test", f"{key}-api.example.test"]
    csr, _ = make_csr(names, key=key)
    status, body, _ = curl_post(_url(acmems), csr)
    assert status == 200, body
    assert_valid_chain(body, pebble, names)


def test_csr_without_common_name_is_accepted(acmems: Acmems, pebble: Pebble) -> None:
    names = ["nocn.example.test"]
    csr, _ = make_csr(names, cn=False)
    status, body, _ = curl_post(_url(acmems), csr)
    assert status == 200, body
    assert_valid_chain(body, pebble, names)


def test_repost_is_byte_identical_without_a_new_order_and_survives_restart(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "storage")
    first = acmems_factory(config, port, "first")
    csr, _ = make_csr(["cache.example.test"])
    status, chain, _ = curl_post(_url(first), csr)
    assert status == 200
    status, again, _ = curl_post(_url(first), csr)
    assert status == 200 and again == chain
    assert _issued(first) == 1
    assert first.stop() == 0
    second = acmems_factory(config, port, "second")
    status, after_restart, _ = curl_post(_url(second), csr)
    assert status == 200 and after_restart == chain
    assert _issued(second) == 0


def test_bytes_around_the_csr_make_no_new_order_and_a_cache_kept_under_the_posted_body_keeps_answering(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    storage = tmp_path / "storage"
    config = base_config(pebble, account_dir, port, storage)
    first = acmems_factory(config, port, "first")
    csr, _ = make_csr(["samecsr.example.test"])
    status, chain, _ = curl_post(_url(first), csr)
    assert status == 200
    for body in (csr + b"\n", csr.replace(b"\n", b"\r\n"), b"# web1's request\n" + csr + b"\n\n"):
        status, again, _ = curl_post(_url(first), body)
        assert status == 200 and again == chain, body
    assert _issued(first) == 1  # one CSR, one order, one certificate
    assert first.stop() == 0
    # A cache written before, as the original wrote it: the folder named by the SHA-384 of the body as
    # posted (here with text around the PEM block), csr.pem that body, no meta.json, no saved index.
    posted = b"# the CSR of web2\r\n" + csr.replace(b"\n", b"\r\n")
    request, old = hashlib.sha384(csr).hexdigest(), hashlib.sha384(posted).hexdigest()
    (storage / old[:2]).mkdir(exist_ok=True)
    (storage / request[:2] / request[2:]).rename(storage / old[:2] / old[2:])
    (storage / old[:2] / old[2:] / "csr.pem").write_bytes(posted)
    (storage / old[:2] / old[2:] / "meta.json").unlink()
    (storage / ".acmems-index.json").unlink()
    second = acmems_factory(config, port, "second")
    status, kept, _ = curl_post(_url(second), posted)
    assert status == 200 and kept == chain
    assert _issued(second) == 0


def test_storage_none_issues_every_time(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = (
        base_config(pebble, account_dir, port, tmp_path / "s")
        .replace('[storage "file"]\ntype = file', '[storage "file"]\ntype = none')
        .replace(f"directory = {tmp_path / 's'}\n", "")
    )
    server = acmems_factory(config, port)
    csr, _ = make_csr(["nocache.example.test"])
    first = curl_post(_url(server), csr)
    second = curl_post(_url(server), csr)
    assert first[0] == second[0] == 200
    assert first[1] != second[1]
    assert _issued(server) == 2


# ------------------------------------------------------------------------------------ refusals


def test_wrong_source_address_is_refused_before_the_body(acmems: Acmems) -> None:
    csr, _ = make_csr(["www.example.test"])
    status, body, _ = curl_post(_url(acmems), csr, extra=["--interface", "127.0.0.2"])
    assert status == 403
    assert b"Authentication header is required" in body or b"not allowed" in body
    assert b"\n" == body[-1:] and body.count(b"\n") == 1


def test_forwarded_headers_do_not_change_the_peer(acmems: Acmems) -> None:
    csr, _ = make_csr(["www.example.test"])
    status, _, _ = curl_post(
        _url(acmems),
        csr,
        {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"},
        extra=["--interface", "127.0.0.2"],
    )
    assert status == 403


def test_missing_and_wrong_hmac_are_refused(acmems: Acmems) -> None:
    csr, _ = make_csr(["secure.sub.example2.test"])
    status, body, _ = curl_post(_url(acmems), csr, extra=["--interface", "127.0.0.2"])
    assert status == 403 and b"Authentication header is required" in body
    status, body, _ = curl_post(
        _url(acmems), csr, {"Authentication": hmac_header(csr, key="wrong")}, extra=["--interface", "127.0.0.2"]
    )
    assert status == 403 and b"HMAC does not match" in body
    status, body, _ = curl_post(_url(acmems), csr, {"Authentication": hmac_header(b"other body")})
    assert status == 403
    status, body, _ = curl_post(_url(acmems), csr, {"Authentication": "hmac name=sha256"})
    assert status == 403 and b"lacks hash=" in body


def test_name_outside_the_block_and_names_split_across_blocks_are_refused(acmems: Acmems) -> None:
    csr, _ = make_csr(["www.elsewhere.test"])
    status, body, _ = curl_post(_url(acmems), csr)
    assert status == 403
    split, _ = make_csr(["www.example.test", "www.sub.example2.test"])
    status, body, _ = curl_post(_url(acmems), split, {"Authentication": hmac_header(split)})
    assert status == 403 and b"no single auth block open to this client allows all these names" in body


def test_request_shape_errors(acmems: Acmems) -> None:
    status, body, _ = curl_post(_url(acmems), b"x" * 5000)
    assert status == 413 and b"max-size" in body
    status, body, _ = curl_post(_url(acmems), b"this is not a CSR")
    assert status == 415 and b"not a PEM certificate request" in body
    status, body, _ = curl_post(_url(acmems), b"hello", extra=["-H", "Transfer-Encoding: chunked"])
    assert status == 411 and b"Content-Length is required" in body
    status, body, _ = curl_post(_url(acmems, "/other"), b"x")
    assert status == 404
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", _url(acmems)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "405"


def test_wildcard_with_http01_is_a_clear_400(acmems: Acmems) -> None:
    csr, _ = make_csr(["*.example.test"])
    status, body, _ = curl_post(_url(acmems), csr)
    assert status == 400 and b"needs DNS-01" in body


def test_validation_failure_is_421_with_the_cas_problem(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    # The web server does not forward to acmems: the challenge listener is on another port.
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "s").replace(
        f"listener = 127.0.0.1:{pebble.http_port}", f"listener = 127.0.0.1:{free_port()}"
    )
    server = acmems_factory(config, port)
    csr, _ = make_csr(["unreachable.example.test"])
    status, body, _ = curl_post(_url(server), csr)
    assert status == 421
    assert b"could not validate unreachable.example.test" in body and b"connection" in body


def test_ca_down_is_503_with_retry_after(acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path) -> None:
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    port = free_port()
    config = base_config(ca, tmp_path / "account", port, tmp_path / "s")
    server = acmems_factory(config, port)
    ca.stop()
    csr, _ = make_csr(["down.example.test"])
    status, body, headers = curl_post(_url(server), csr)
    assert status == 503 and b"cannot be reached" in body
    assert int(headers["retry-after"]) > 0


def test_request_timeout_is_504_and_the_retry_gets_the_certificate(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "s").replace(
        "max-size = 4k", "max-size = 4k\nrequest-timeout = 0.001"
    )
    server = acmems_factory(config, port)
    csr, _ = make_csr(["slow.example.test"])
    status, body, headers = curl_post(_url(server), csr)
    assert status == 504 and "retry-after" in headers and b"still being issued" in body
    # the order goes on: once it is issued, the client's retry gets it
    wait_for(lambda: _issued(server) == 1, waits.ISSUANCE, "the order that went on")
    status, _body, _ = curl_post(_url(server), csr)
    assert status == 200
    assert _issued(server) == 1


# --------------------------------------------------------------------------------- concurrency


def test_20_distinct_csrs_at_once_all_succeed(acmems: Acmems, pebble: Pebble) -> None:
    csrs = [(f"many{i}.example.test", make_csr([f"many{i}.example.test"])[0]) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda item: (item[0], curl_post(_url(acmems), item[1])), csrs))
    for name, (status, body, _) in results:
        assert status == 200, body
        assert_valid_chain(body, pebble, [name])
    assert _issued(acmems) == 20


def test_10_identical_csrs_at_once_cause_one_order(acmems: Acmems) -> None:
    csr, _ = make_csr(["same.example.test"])
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: curl_post(_url(acmems), csr), range(10)))
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, body, _ in results}) == 1
    assert _issued(acmems) == 1


# ---------------------------------------------------------------------------- nginx, two acmems


def test_two_acmems_behind_nginx_the_token_held_by_the_second(
    acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path
) -> None:
    from tests.realservices import Nginx

    proxy_port = free_port()
    ca = Pebble(tmp_path / "pebble", bind.port, proxy_port).start()
    backends = [free_port(), free_port()]
    nginx = Nginx(tmp_path / "nginx", proxy_port, backends).start()
    try:
        servers = []
        for index, backend in enumerate(backends):
            port = free_port()
            config = base_config(ca, tmp_path / "account", port, tmp_path / f"s{index}").replace(
                f"listener = 127.0.0.1:{proxy_port}", f"listener = 127.0.0.1:{backend}"
            )
            servers.append(acmems_factory(config, port, f"acmems{index}"))
        for index, server in enumerate(servers):
            names = [f"proxied{index}.example.test"]
            csr, _ = make_csr(names)
            status, body, _ = curl_post(_url(server), csr)
            assert status == 200, body
            assert_valid_chain(body, ca, names)
        access = (tmp_path / "nginx" / "access.log").read_text()
        assert "/.well-known/acme-challenge/" in access
    finally:
        nginx.stop()
        ca.stop()


def test_ipv6_management_listener_and_clean_sigterm(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = (
        base_config(pebble, account_dir, port, tmp_path / "s")
        .replace(f"listener = 127.0.0.1:{port}", f"listener = 127.0.0.1:{port}\nlistener = [::1]:{port}")
        .replace("ip = 127.0.0.1", "ip = 127.0.0.1\nip = ::1")
    )
    server = acmems_factory(config, port)
    csr, _ = make_csr(["v6.example.test"])
    status, body, _ = curl_post(f"http://[::1]:{port}/sign", csr, extra=["-g"])
    assert status == 200, body
    assert server.stop() == 0
    assert "stopped" in server.log_text()
