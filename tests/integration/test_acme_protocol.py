"""The protocol edges of [acme-server] with a raw client (tests/acme_raw.py): nonces, the JWS checks,
EAB, the block's policy, finalize, problem documents, URLs from Host, account changes, renewalInfo."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from acmems.acme_server.jws import thumbprint as acme_thumbprint
from acmems.acme_server.validation import FETCH_TIMEOUT
from tests import ini, waits
from tests.acme_clients import AcmeSite
from tests.acme_raw import RawClient, b64, ec_key, jwk_of
from tests.conftest import _RUNNING, make_csr
from tests.realservices import Acmems, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration

KEY = "protocol-hmac-key-0123456789abcdef"
LIMITED_KEY = "limited-hmac-key-0123456789abcdef"
HTTP01_PORT = free_port()  # where acmems checks the http-01 answers of the "checked" block


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pebble: Pebble) -> Iterator[AcmeSite]:
    """One acmems for the module: an EAB block, an ip block, one that checks http-01 itself."""
    here = AcmeSite.make(tmp_path_factory.mktemp("acme-protocol"))
    config = here.config(
        pebble,
        ini.auth("team", ["*.team.example.test"], hmac_key=KEY, storage="file"),
        ini.auth("open", ["*.open.example.test"], ip="127.0.0.1", storage="file"),
        ini.auth("checked", [], ip="127.0.0.3", address="127.0.0.0/8", storage="file", **{"acme-challenge": "http-01"}),
        ini.auth(
            "limited", ["*.limited.example.test"], hmac_key=LIMITED_KEY, storage="file", **{"limit-new-orders": "1/1h"}
        ),
        http_01_port=HTTP01_PORT,
    ).replace("[mgmt]\n", "[mgmt]\nmax-size = 4k\n")
    server = Acmems(here.directory / "acmems", config, here.mgmt_port).start()
    _RUNNING.append(("acmems", server.log))
    yield here
    server.stop()
    _RUNNING.remove(("acmems", server.log))


def client(site: AcmeSite, **options: Any) -> RawClient:
    return RawClient(site.port, site.ca_file, **options)


def team(site: AcmeSite) -> RawClient:
    raw = client(site)
    assert raw.new_account(("team", KEY.encode())).status == 201
    return raw


def _csr_der(names: list[str]) -> str:
    pem, _ = make_csr(names)
    return b64(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))


def _finalized(raw: RawClient, names: list[str], csr_names: list[str] | None = None) -> Any:
    order = raw.new_order(names)
    assert order.status == 201, order.body
    return raw.post(order.json()["finalize"], {"csr": _csr_der(csr_names or names)})


def test_a_nonce_is_single_use_and_an_unknown_one_is_refused_with_a_fresh_one(site: AcmeSite) -> None:
    raw = team(site)
    nonce = raw.nonce()
    first = raw.post(raw.kid or "", None, nonce=nonce)
    assert first.status == 200
    again = raw.post(raw.kid or "", None, nonce=nonce)
    assert again.status == 400 and again.problem == "badNonce"
    assert again.headers["replay-nonce"] and again.headers["replay-nonce"] != nonce
    assert again.headers["content-type"].startswith("application/problem+json")
    assert raw.post(raw.kid or "", None, nonce="bm90LWlzc3VlZA").problem == "badNonce"
    # the fresh nonce of the refusal works
    assert raw.post(raw.kid or "", None, nonce=again.headers["replay-nonce"]).status == 200


def test_the_jws_url_must_be_the_request_url(site: AcmeSite) -> None:
    raw = team(site)
    body = raw.jws(raw.base + "/acme/new-order", {"identifiers": [{"type": "dns", "value": "a.team.example.test"}]})
    answer = raw.request("POST", raw.kid or "", body)
    assert answer.status == 403 and answer.problem == "unauthorized" and "is not the URL" in answer.json()["detail"]


@pytest.mark.parametrize("alg", ["none", "HS256", "RS1"])
def test_none_and_mac_algorithms_are_refused(site: AcmeSite, alg: str) -> None:
    raw = client(site)
    url = raw.get_directory()["newAccount"]
    answer = raw.request("POST", url, raw.jws(url, {}, protected={"alg": alg}))
    assert answer.status == 400 and answer.problem == "badSignatureAlgorithm"
    assert "ES256" in answer.json()["algorithms"]


def test_an_unknown_kid_a_bad_signature_and_a_wrong_content_type(site: AcmeSite) -> None:
    raw = team(site)
    stranger = client(site, kid=raw.base + "/acme/acct/nosuchaccount")
    stranger.get_directory()
    assert stranger.new_order(["a.team.example.test"]).problem == "accountDoesNotExist"
    # the account's kid, signed by another key
    impostor = client(site, kid=raw.kid)
    impostor.get_directory()
    answer = impostor.post(raw.base + "/acme/new-order", {"identifiers": []})
    assert answer.status == 400 and "signature does not verify" in answer.json()["detail"]
    body = raw.jws(raw.kid or "", None)
    answer = raw.request("POST", raw.kid or "", body, content_type="application/json")
    assert answer.status == 415 and answer.problem == "malformed"


def test_eab_with_a_wrong_mac_or_an_unknown_block_is_unauthorized(site: AcmeSite) -> None:
    assert client(site).new_account(("team", b"not-the-key")).problem == "unauthorized"
    assert client(site).new_account(("nosuchblock", KEY.encode())).problem == "unauthorized"
    # one key id binds many accounts
    assert team(site).kid != team(site).kid


def test_without_eab_only_an_address_an_ip_block_allows_gets_an_account(site: AcmeSite) -> None:
    assert client(site).new_account().status == 201  # 127.0.0.1: the "open" block
    refused = client(site, source="127.0.0.2").new_account()
    assert refused.status == 403 and refused.problem == "externalAccountRequired"
    assert "acmems eab" in refused.json()["detail"]
    # an account bound to the ip block is refused from another address
    raw = client(site)
    raw.new_account()
    moved = RawClient(site.port, site.ca_file, source="127.0.0.2", key=raw.key, kid=raw.kid)
    answer = moved.post(raw.kid or "", None)
    assert answer.problem == "unauthorized" and "127.0.0.2" in answer.json()["detail"]


def test_identifiers_outside_the_block_are_rejected_each_named(site: AcmeSite) -> None:
    raw = team(site)
    answer = raw.new_order(["ok.team.example.test", "x.open.example.test", "*.team.example.test"])
    assert answer.status == 400 and answer.problem == "rejectedIdentifier"
    problem = answer.json()
    refused = sorted(p["identifier"]["value"] for p in problem["subproblems"])
    assert refused == ["*.team.example.test", "x.open.example.test"]
    assert "x.open.example.test" in problem["detail"]


def test_a_csr_that_does_not_match_the_order_is_a_bad_csr_naming_the_difference(site: AcmeSite) -> None:
    raw = team(site)
    answer = _finalized(raw, ["m.team.example.test"], ["m.team.example.test", "n.team.example.test"])
    assert answer.problem == "badCSR" and "n.team.example.test" in answer.json()["detail"]


def test_a_body_over_max_size_is_refused(site: AcmeSite) -> None:
    raw = team(site)
    answer = raw.post(raw.directory["newOrder"], {"identifiers": [], "padding": "x" * 5000})
    assert answer.status == 413 and answer.problem == "malformed" and "max-size" in answer.json()["detail"]


def test_an_order_is_issued_through_the_cache_and_urls_follow_the_host_header(site: AcmeSite) -> None:
    raw = client(site, host=f"acmems.example.test:{site.port}")
    directory = raw.get_directory()
    assert directory["newOrder"] == f"https://acmems.example.test:{site.port}/acme/new-order"
    assert raw.new_account(("team", KEY.encode())).status == 201
    assert raw.kid is not None and raw.kid.startswith(f"https://acmems.example.test:{site.port}/acme/acct/")
    pem, _ = make_csr(["h.team.example.test"])
    der = b64(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    chains = []
    for _ in range(2):
        order = raw.new_order(["h.team.example.test"])
        final = raw.post(order.json()["finalize"], {"csr": der})
        assert final.status == 200 and final.json()["status"] == "valid", final.body
        assert final.headers["link"].endswith('rel="index"')
        certificate = raw.post(final.json()["certificate"], None)
        assert certificate.headers["content-type"].startswith("application/pem-certificate-chain")
        chains.append(certificate.body)
    assert chains[0] == chains[1]  # the same CSR again: acmems' cache, like POST /sign
    leaf = x509.load_pem_x509_certificate(chains[0])
    # renewalInfo: acmems' own renewal time for it
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    info = raw.request("GET", f"{directory['renewalInfo']}/{b64(aki)}.{b64(serial)}")
    assert info.status == 200 and info.headers["retry-after"]
    window = info.json()["suggestedWindow"]
    assert window["start"] < window["end"] <= leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    unknown = raw.request("GET", f"{directory['renewalInfo']}/{b64(aki)}.{b64(b'xx')}")
    assert unknown.status == 404


def test_key_change_deactivation_and_an_ed25519_account(site: AcmeSite) -> None:
    raw = team(site)
    new_key = ec_key()
    url = raw.directory["keyChange"]
    inner = RawClient(site.port, site.ca_file, key=new_key)
    old_jwk = jwk_of(raw.key)
    inner_jws = json.loads(
        inner.jws(url, {"account": raw.kid, "oldKey": old_jwk}, use_jwk=True, protected={"nonce": None})
    )
    assert raw.post(url, inner_jws).status == 200
    # the old key is no longer the account's; the new one is
    assert raw.post(raw.kid or "", None).status == 400
    moved = RawClient(site.port, site.ca_file, key=new_key, kid=raw.kid)
    assert moved.post(raw.kid or "", None).json()["status"] == "valid"
    # deactivated: every later request is refused
    assert moved.post(raw.kid or "", {"status": "deactivated"}).json()["status"] == "deactivated"
    assert moved.post(raw.kid or "", None).problem == "unauthorized"
    # EdDSA (Ed25519) account keys are accepted
    edwards = client(site, key=ed25519.Ed25519PrivateKey.generate())
    assert edwards.new_account(("team", KEY.encode())).status == 201
    assert edwards.new_order(["ed.team.example.test"]).status == 201


class _Answers(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, str]] = {}  # token -> key authorization

    def do_GET(self) -> None:
        body = self.answers.get(self.path.rsplit("/", 1)[-1], "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_block_with_acme_challenge_http01_checks_the_answer_itself(site: AcmeSite) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", HTTP01_PORT), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        raw = client(site, source="127.0.0.3")
        assert raw.new_account().status == 201  # the "checked" block, by address
        order = raw.new_order(["127.0.0.1"]).json()
        assert order["status"] == "pending"
        authz = raw.post(order["authorizations"][0], None).json()
        challenge = authz["challenges"][0]
        assert authz["status"] == "pending" and challenge["type"] == "http-01"
        thumbprint = acme_thumbprint(jwk_of(raw.key))
        _Answers.answers = {challenge["token"]: f"{challenge['token']}.{thumbprint}"}
        assert raw.post(challenge["url"], {}).status == 200
        wait_for(
            lambda: raw.post(order["authorizations"][0], None).json()["status"] == "valid",
            waits.after(1, FETCH_TIMEOUT),
            "acmems' http-01 check",
        )
        final = raw.post(order["finalize"], {"csr": _ip_csr()})
        assert final.json()["status"] == "valid", final.body
        # a wrong answer: the authorization and the order are invalid, and the page is not read back
        wrong = raw.new_order(["127.0.0.1"]).json()
        challenge = raw.post(wrong["authorizations"][0], None).json()["challenges"][0]
        _Answers.answers = {challenge["token"]: "internal page content"}
        raw.post(challenge["url"], {})
        wait_for(
            lambda: raw.post(wrong["authorizations"][0], None).json()["status"] == "invalid",
            waits.after(1, FETCH_TIMEOUT),
            "acmems' http-01 check to fail",
        )
        error = raw.post(wrong["authorizations"][0], None).json()["challenges"][0]["error"]
        assert error["type"].endswith(":incorrectResponse") and "internal page" not in error["detail"]
        assert raw.post(wrong["finalize"].removesuffix("/finalize"), None).json()["status"] == "invalid"
    finally:
        server.shutdown()
        server.server_close()


def _ip_csr() -> str:
    key = ec_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acmems tests")]))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return b64(request.public_bytes(serialization.Encoding.DER))


def test_revocation_by_the_certificate_s_key_and_a_quota_refusal_keeps_its_retry_after(site: AcmeSite) -> None:
    raw = team(site)
    pem, key_pem = make_csr(["rk.team.example.test"])
    order = raw.new_order(["rk.team.example.test"]).json()
    der = b64(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    final = raw.post(order["finalize"], {"csr": der}).json()
    chain = raw.post(final["certificate"], None).body
    leaf = b64(x509.load_pem_x509_certificate(chain).public_bytes(serialization.Encoding.DER))
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    stranger = client(site)
    stranger.get_directory()
    refused = stranger.post(raw.directory["revokeCert"], {"certificate": leaf}, use_jwk=True)
    assert refused.problem == "unauthorized"
    holder = client(site, key=key)  # no account: the request is signed with the certificate's key
    holder.get_directory()
    assert holder.post(raw.directory["revokeCert"], {"certificate": leaf, "reason": 1}, use_jwk=True).status == 200
    again = raw.post(raw.directory["revokeCert"], {"certificate": leaf})
    assert again.problem == "alreadyRevoked"
    # limit-new-orders = 1/1h: the second new order of the block is invalid, with the quota's Retry-After
    limited = client(site)
    assert limited.new_account(("limited", LIMITED_KEY.encode())).status == 201
    assert _finalized(limited, ["one.limited.example.test"]).json()["status"] == "valid"
    second = _finalized(limited, ["two.limited.example.test"])
    assert second.json()["status"] == "invalid"
    assert (
        second.json()["error"]["type"].endswith(":rateLimited")
        and "limit-new-orders" in second.json()["error"]["detail"]
    )
    assert int(second.headers["retry-after"]) > 0


def _cert_id(chain: bytes) -> str:
    leaf = x509.load_pem_x509_certificate(chain)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    return f"{b64(aki)}.{b64(serial)}"


def test_replaces_is_relayed_for_a_certificate_acmems_gave_the_account_and_left_out_otherwise(site: AcmeSite) -> None:
    raw = team(site)
    first = _finalized(raw, ["rp.team.example.test"]).json()
    old = _cert_id(raw.post(first["certificate"], None).body)
    renewal = raw.new_order(["rp.team.example.test"], replaces=old).json()
    assert renewal["replaces"] == old
    done = raw.post(renewal["finalize"], {"csr": _csr_der(["rp.team.example.test"])}).json()
    assert done["status"] == "valid", done  # the CA took the order with replaces (or acmems ordered again without)
    assert _cert_id(raw.post(done["certificate"], None).body) != old
    other = team(site)
    assert "replaces" not in other.new_order(["rq.team.example.test"], replaces=old).json()
    assert other.new_order(["rq.team.example.test"], replaces="no-dot").problem == "malformed"
