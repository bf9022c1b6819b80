"""CSR checks: PEM, signature, key, names."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from acmems.core.csr import MAX_NAMES, parse_csr
from acmems.errors import CsrError
from tests.conftest import make_csr

_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def build(cn: str | None, sans: Sequence[x509.GeneralName], key: object = None) -> bytes:
    private = key or _EC_KEY
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_names_are_sans_plus_cn_lower_case_without_duplicates() -> None:
    info = parse_csr(build("WWW.Example.org", [x509.DNSName("www.example.org"), x509.DNSName("Mail.example.org")]))
    assert info.names == ("www.example.org", "mail.example.org")
    assert (info.key_type, info.key_size) == ("EC", 256)


def test_sans_without_cn_and_cn_without_sans() -> None:
    assert parse_csr(build(None, [x509.DNSName("a.example.org")])).names == ("a.example.org",)
    assert parse_csr(build("b.example.org", [])).names == ("b.example.org",)


def test_the_key_is_the_request_itself_and_the_body_as_posted_is_the_second_key() -> None:
    pem, _ = make_csr(["x.example.org"])  # what openssl writes: the standard PEM form
    assert parse_csr(pem).pem == pem and parse_csr(pem).keys == (pem,)
    wrapped = b"garbage before\n" + pem + b"after"
    crlf = pem.replace(b"\n", b"\r\n")
    for body in (wrapped, crlf, pem + b"\n\n"):
        info = parse_csr(body)
        assert info.pem == pem and info.request_pem == pem and info.body == body
        assert info.keys == (pem, body)  # the request first; the body: caches written before
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    rewrapped = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE REQUEST-----\n"
    )
    assert parse_csr(rewrapped).pem == pem  # other line lengths: the same request, the same key


def test_wildcards() -> None:
    info = parse_csr(build(None, [x509.DNSName("*.example.org"), x509.DNSName("example.org")]))
    assert info.has_wildcard and info.names == ("*.example.org", "example.org")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not a PEM certificate request"),
        (b"hello", "not a PEM certificate request"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a PEM certificate request"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "cannot be decoded"),
    ],
)
def test_not_a_csr(body: bytes, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        parse_csr(body)


def test_broken_signature() -> None:
    der = bytearray(x509.load_pem_x509_csr(make_csr(["x.example.org"])[0]).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF
    csr = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CsrError, match="signature is invalid"):
        parse_csr(csr.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (rsa.generate_private_key(65537, 1024), "RSA key of 1024 bits"),
        (ec.generate_private_key(ec.SECP521R1()), "EC curve secp521r1 is not accepted"),
        (ec.generate_private_key(ec.SECP256K1()), "EC curve secp256k1"),
        (ed25519.Ed25519PrivateKey.generate(), "keys are not accepted by CAs"),
        (dsa.generate_private_key(2048), "keys are not accepted by CAs"),
    ],
)
def test_unsupported_keys(key: object, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        parse_csr(build("x.example.org", [], key))


def test_rsa_2048_and_p384_are_fine() -> None:
    assert parse_csr(build("x.example.org", [], rsa.generate_private_key(65537, 2048))).key_type == "RSA"
    assert parse_csr(build("x.example.org", [], ec.generate_private_key(ec.SECP384R1()))).key_size == 384


@pytest.mark.parametrize(
    ("san", "message"),
    [
        (x509.IPAddress(ipaddress.ip_network("192.0.2.0/24")), "IP network"),
        (x509.RFC822Name("a@example.org"), "e-mail address"),
        (x509.UniformResourceIdentifier("https://example.org/"), "URI"),
        (x509.DNSName("example.org."), "remove the trailing dot"),
        (x509.DNSName("bad_name!.example.org"), "not a valid DNS name"),
        (x509.DNSName("localhost"), "not a valid DNS name"),
        (x509.DNSName("a.*.example.org"), "not a valid DNS name"),
    ],
)
def test_names_that_cannot_be_certified(san: x509.GeneralName, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        parse_csr(build(None, [x509.DNSName("ok.example.org"), san]))


def test_idn_u_label_is_refused_and_punycode_accepted() -> None:
    with pytest.raises(CsrError, match="punycode"):
        parse_csr(build("bücher.example", []))
    assert parse_csr(build(None, [x509.DNSName("xn--bcher-kva.example")])).names == ("xn--bcher-kva.example",)


def test_too_many_names() -> None:
    names = [x509.DNSName(f"n{i}.example.org") for i in range(MAX_NAMES + 1)]
    with pytest.raises(CsrError, match=f"at most {MAX_NAMES}"):
        parse_csr(build(None, names))


def test_no_names() -> None:
    with pytest.raises(CsrError, match="names no domain"):
        parse_csr(build(None, []))


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_a_csr_or_our_error(body: bytes) -> None:
    try:
        parse_csr(body)
    except CsrError:
        pass


@given(st.binary(min_size=1, max_size=600))
def test_arbitrary_base64_inside_pem_armour_gives_our_error(payload: bytes) -> None:
    import base64

    body = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(payload) + b"-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(CsrError):
        parse_csr(body)


def test_ip_address_sans_are_identifiers_the_auth_blocks_decide_on() -> None:
    info = parse_csr(
        build(
            None,
            [
                x509.DNSName("ok.example.org"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                x509.IPAddress(ipaddress.ip_address("2001:db8:0:0::1")),
            ],
        )
    )
    assert info.names == ("ok.example.org", "192.0.2.7", "2001:db8::1")
    assert info.addresses == {"192.0.2.7", "2001:db8::1"}
    assert parse_csr(build(None, [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))])).names == ("192.0.2.7",)


def test_an_ip_address_as_common_name_is_refused_saying_why() -> None:
    with pytest.raises(CsrError, match=r"common name is an IP address .* CAs refuse that"):
        parse_csr(build("192.0.2.7", [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]))


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


def _tlv_end(der: bytes, start: int) -> int:
    first = der[start + 1]
    if first < 0x80:
        return start + 2 + first
    size = first & 0x7F
    return start + 2 + size + int.from_bytes(der[start + 2 : start + 2 + size], "big")


def test_a_common_name_that_is_a_bit_string_is_our_error_not_a_crash() -> None:
    # cryptography builds a CN as text only: the UTF8String "Zbitcn" is turned into the BIT STRING
    # 00 "bitcn" of the same length and the request signed again, as a hostile client could.
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zbitcn")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bit.example.org")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = request.public_bytes(serialization.Encoding.DER)
    tbs = request.tbs_certrequest_bytes.replace(b"\x0c\x06Zbitcn", b"\x03\x06\x00bitcn")
    start = der.index(request.tbs_certrequest_bytes)
    algorithm = der[
        start + len(request.tbs_certrequest_bytes) : _tlv_end(der, start + len(request.tbs_certrequest_bytes))
    ]
    signature = b"\x00" + key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    inner = tbs + algorithm + b"\x03" + _der_length(len(signature)) + signature
    hostile = b"\x30" + _der_length(len(inner)) + inner
    pem = x509.load_der_x509_csr(hostile).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match=r"subject cannot be read \(a common name must be text\)") as refused:
        parse_csr(pem)
    assert refused.value.status == 415
