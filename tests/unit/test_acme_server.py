"""The ACME server's pure parts: the JWS checks (RFC 8555 §6.2), thumbprints (RFC 7638), external
account binding (§7.3.4), the problem table, routes, the [acme-server] configuration and `acmems eab`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acmems.acme_server.front import route
from acmems.acme_server.jws import check_eab, parse_jws, thumbprint, verify
from acmems.acme_server.orders import authorization_for, csr_difference, status_after
from acmems.acme_server.problems import AcmeProblem, from_error
from acmems.cli import main
from acmems.config import settings_from_sources
from acmems.config.describe import describe_settings
from acmems.core.acme_records import Identifier
from acmems.errors import AcmemsError, CaError, ConfigError, Kind
from tests.acme_raw import RawClient, b64, ec_key, jwk_of


def _problem(kind: str, call: Callable[..., object], *args: object, **kwargs: object) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        call(*args, **kwargs)
    assert caught.value.kind == kind, caught.value.detail
    return caught.value


def _signed(payload: object = None, **protected: object) -> bytes:
    client = RawClient(1, Path("/dev/null"))
    return client.jws("https://acme.test/acme/new-order", payload, nonce="n0nce", use_jwk=True, protected=protected)


def test_the_rfc_7638_example_thumbprint() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMs"
        "tn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn"
        "1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_well_formed_request_parses_and_verifies_with_its_key() -> None:
    request = parse_jws(_signed({"identifiers": []}))
    assert request.url == "https://acme.test/acme/new-order" and request.nonce == "n0nce" and request.kid is None
    assert request.jwk is not None
    verify(request, request.jwk)
    assert request.payload_json() == {"identifiers": []}
    other = jwk_of(ec_key())
    _problem("malformed", verify, request, other)  # another key: the signature does not verify


@pytest.mark.parametrize(
    ("protected", "kind"),
    [
        ({"alg": "none"}, "badSignatureAlgorithm"),
        ({"alg": "HS256"}, "badSignatureAlgorithm"),
        ({"nonce": None}, "badNonce"),
        ({"url": None}, "malformed"),
        ({"kid": "https://acme.test/acme/acct/x"}, "malformed"),  # jwk and kid both
        ({"b64": False}, "malformed"),
    ],
)
def test_the_protected_header_is_checked(protected: dict[str, object], kind: str) -> None:
    _problem(kind, parse_jws, _signed({}, **protected))


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b"{}", b'{"protected": "e30", "payload": "", "signature": "", "header": {}}', b"not json"],
)
def test_a_body_that_is_not_a_flattened_jws_is_malformed(body: bytes) -> None:
    _problem("malformed", parse_jws, body)


def test_a_private_key_or_an_rsa_key_too_small_is_a_bad_public_key() -> None:
    request = parse_jws(_signed({}))
    assert request.jwk is not None
    _problem("badPublicKey", verify, request, {**request.jwk, "d": b64(b"secret")})
    _problem("badPublicKey", thumbprint, {"kty": "oct", "k": "c2VjcmV0"})


def test_eab_checks_the_mac_the_key_id_the_url_and_the_bound_key() -> None:
    client = RawClient(1, Path("/dev/null"))
    url = "https://acme.test/acme/new-account"
    keys = {"team": b"the-block-hmac-key"}
    account = jwk_of(client.key)
    assert check_eab(client.eab("team", keys["team"], url), account, url, keys) == "team"
    assert check_eab(client.eab("team", keys["team"], url, "HS512"), account, url, keys) == "team"
    _problem("unauthorized", check_eab, client.eab("team", b"wrong", url), account, url, keys)
    _problem("unauthorized", check_eab, client.eab("other", keys["team"], url), account, url, keys)
    _problem("unauthorized", check_eab, client.eab("team", keys["team"], url + "x"), account, url, keys)
    _problem("unauthorized", check_eab, client.eab("team", keys["team"], url), jwk_of(ec_key()), url, keys)
    binding = client.eab("team", keys["team"], url)
    binding["protected"] = b64(json.dumps({"alg": "ES256", "kid": "team", "url": url}).encode())
    _problem("badSignatureAlgorithm", check_eab, binding, account, url, keys)


def test_acmems_errors_become_acme_problems() -> None:
    limited = from_error(AcmemsError("quota", kind=Kind.RATE_LIMITED, retry_after=120))
    assert (limited.kind, limited.http_status, limited.retry_after) == ("rateLimited", 429, 120)
    upstream = from_error(CaError("no", kind=Kind.CA_REFUSED, problem_type="rejectedIdentifier"))
    assert upstream.kind == "rejectedIdentifier" and upstream.http_status == 400
    down = from_error(CaError("down", kind=Kind.CA_UNREACHABLE))
    assert (down.kind, down.http_status) == ("serverInternal", 503)
    assert from_error(AcmemsError("boom")).document()["type"] == "urn:ietf:params:acme:error:serverInternal"
    missing = AcmeProblem("notFound", "no such order")
    assert missing.http_status == 404 and missing.type_urn.endswith(":malformed")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/directory", ("directory", "")),
        ("/acme/new-order", ("new-order", "")),
        ("/acme/acct/abc", ("acct", "abc")),
        ("/acme/acct/abc/orders", ("orders", "abc")),
        ("/acme/order/abc/finalize", ("finalize", "abc")),
        ("/acme/renewal-info/a.b", ("renewal-info", "a.b")),
        ("/acme/order/abc/orders", None),
        ("/acme/acct", None),
        ("/acme/../etc/passwd", None),
        ("/sign", None),
    ],
)
def test_routes(path: str, expected: tuple[str, str] | None) -> None:
    assert route(path) == expected


def _config(section: str) -> str:
    return (
        '[account]\ndir = /tmp/acct\n[auth "team"]\ndomain = *.example.test\nhmac_type = sha256\nhmac_key = k3y\n'
        + section
    )


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("[acme-server]\ndir = /x\n", "needs 'listener'"),
        ("[acme-server]\nlistener = 127.0.0.1:8555\ndir = /x\n", "needs the listener's 'certificate' and 'key'"),
        ("[acme-server]\nlistener = 127.0.0.1:8555\nname = a.example.test\n", "needs 'dir'"),
        (
            "[acme-server]\nlistener = 127.0.0.1:8555\ncertificate = /nonexistent\nkey = /nonexistent\ndir = /x\n",
            "not a readable file",
        ),
        (
            "[acme-server]\nlistener = 127.0.0.1:8555\nname = a.example.test\ncertificate = /c\nkey = /k\ndir = /x\n",
            "not both",
        ),
        ("[acme-server]\nlistener = 127.0.0.1:8555\nname = not_a_name\ndir = /x\n", "is not a DNS name"),
        (
            "[acme-server]\nlistener = 127.0.0.1:8555\nname = a.example.test\ndir = /x\nverification = nope\n",
            "names no [verification",
        ),
        (
            '[acme-server]\nlistener = 127.0.0.1:8555\nname = a.example.test\ndir = /x\n[auth "b"]\nacme-challenge = dns-01\n',
            "neither http-01 nor none",
        ),
    ],
)
def test_acme_server_configuration_errors_say_what_to_fix(section: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_sources([("t.ini", _config(section))])
    assert says in caught.value.message, caught.value.message


def test_acme_server_with_name_resolves_its_verification_and_ca() -> None:
    settings = settings_from_sources(
        [("t.ini", _config("[acme-server]\nlistener = 127.0.0.1:8555\nname = A.example.test\ndir = /x\n"))]
    )
    assert settings.acme_server is not None
    assert settings.acme_server.names == ("a.example.test",) and settings.acme_server.verification == "http"
    assert settings.acme_server.http01_port == 80


def test_acmems_eab_prints_the_key_id_and_the_mac_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "a.ini"
    config.write_text(_config('[auth "plain"]\ndomain = x.test\nip = 127.0.0.1\n'))
    assert main(["eab", str(config), "team"]) == 0
    out = capsys.readouterr().out
    assert out == f"kid: team\nhmac: {base64.urlsafe_b64encode(b'k3y').rstrip(b'=').decode()}\n"
    assert main(["eab", str(config), "plain"]) == 1
    assert "has no hmac_key" in capsys.readouterr().err
    assert main(["eab", str(config), "nosuch"]) == 1
    assert "no auth block 'nosuch'" in capsys.readouterr().err


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    protected=st.dictionaries(st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "b64", "crit"]), _JSON, max_size=6),
    payload=st.binary(max_size=40),
    signature=st.binary(max_size=40),
)
def test_any_jws_shape_is_a_problem_or_a_request_never_another_error(
    protected: dict[str, object], payload: bytes, signature: bytes
) -> None:
    body = json.dumps(
        {"protected": b64(json.dumps(protected).encode()), "payload": b64(payload), "signature": b64(signature)}
    ).encode()
    try:
        request = parse_jws(body)
    except AcmeProblem:
        return
    for key in (
        request.jwk,
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
    ):
        try:
            verify(request, key or {})
        except AcmeProblem:
            pass
    try:
        request.payload_json()
    except AcmeProblem:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_body_is_a_problem_or_a_request(body: bytes) -> None:
    try:
        parse_jws(body)
    except AcmeProblem:
        pass


def test_an_order_s_status_follows_its_authorizations() -> None:
    assert status_after(["valid", "valid"]) == "ready"
    assert status_after(["valid", "pending"]) == "pending"
    assert status_after(["pending", "invalid"]) == "invalid"
    assert status_after(["valid", "deactivated"]) == "invalid"


def test_authorizations_are_valid_by_policy_unless_the_block_validates() -> None:
    www = Identifier("dns", "www.example.test")
    wild = Identifier("dns", "*.example.test")
    by_policy = authorization_for(www, "acct", 2.0, 1.0, validate=False, dns01=False)
    assert (by_policy.status, by_policy.challenge_type, by_policy.validated) == ("valid", "http-01", 1.0)
    checked = authorization_for(www, "acct", 2.0, 1.0, validate=True, dns01=False)
    assert (checked.status, checked.challenge_status, checked.token != "") == ("pending", "pending", True)
    wildcard = authorization_for(wild, "acct", 2.0, 1.0, validate=True, dns01=True)
    assert (wildcard.status, wildcard.wildcard, wildcard.identifier.value, wildcard.challenge_type) == (
        "valid",
        True,
        "example.test",
        "dns-01",
    )


def test_the_csr_difference_names_what_is_extra_and_what_is_missing() -> None:
    assert csr_difference({"a.test", "b.test"}, {"b.test", "a.test"}) is None
    assert csr_difference({"a.test"}, {"a.test", "c.test"}) == "the CSR names c.test, which the order does not"
    assert csr_difference({"a.test", "b.test"}, {"a.test"}) == "the CSR lacks b.test of the order"


def test_acmems_check_shows_the_acme_server_section_without_secrets() -> None:
    settings = settings_from_sources(
        [("t.ini", _config("[acme-server]\nlistener = 127.0.0.1:8555\nname = a.example.test\ndir = /x\n"))]
    )
    text = describe_settings(settings)
    assert "[acme-server]\n  listener = 127.0.0.1:8555\n  name = a.example.test (ordered by acmems" in text
    assert "acme-challenge = none" in text and "k3y" not in text
