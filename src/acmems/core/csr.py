"""Parse and check a client's PEM CSR: signature, key, and the DNS names and IP addresses it asks for."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acmems.errors import CsrError
from acmems.lru import Lru

__all__ = ["MAX_NAMES", "CsrInfo", "CsrMemo", "check_name", "is_address", "parse_csr"]

#: Let's Encrypt's limit of names per certificate; other CAs allow no more.
MAX_NAMES = 100
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME_RE = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})+")
_PEM_RE = re.compile(
    rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----[A-Za-z0-9+/=\s]+-----END (NEW )?CERTIFICATE REQUEST-----"
)


@dataclass(frozen=True, slots=True)
class CsrInfo:
    """A checked CSR: the request itself as PEM (``pem``: its DER in the standard PEM form, 64
    characters a line, as openssl writes it; the cache key and what the CA gets), the identifiers it
    asks for (``names``: DNS names lower-case, then IP addresses in their short form; no duplicates),
    which of them are IP addresses, its key, and the body exactly as posted (``body``)."""

    pem: bytes
    names: tuple[str, ...]
    key_type: str
    key_size: int
    addresses: frozenset[str] = frozenset()
    body: bytes = b""

    @property
    def request_pem(self) -> bytes:
        """What the CA gets: the request alone."""
        return self.pem

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The cache keys to look up, in turn: the request itself, then the body as posted when it
        differs (text around the PEM block, CRLF lines): the key earlier acmems and the original
        stored it under, so those caches keep answering."""
        return (self.pem,) if self.body in (b"", self.pem) else (self.pem, self.body)

    @property
    def has_wildcard(self) -> bool:
        """Whether any name is a wildcard (needs DNS-01)."""
        return any(name.startswith("*.") for name in self.names)


def check_name(name: str, where: str) -> str:
    """``name`` lower-cased if it is an ASCII DNS name (``*.`` allowed), else :class:`CsrError`
    saying what is wrong with it (``where``: what it is, for the message)."""
    return _check_name(name, where)


def _check_name(name: str, where: str) -> str:
    if not name.isascii():
        raise CsrError(f"{where} {name!r} is not ASCII; write internationalised names in punycode (xn--...)")
    lowered = name.lower()
    if lowered.endswith("."):
        raise CsrError(f"{where} {name!r} ends with a dot; remove the trailing dot")
    if len(lowered) > 253 or not _NAME_RE.fullmatch(lowered):
        raise CsrError(f"{where} {name!r} is not a valid DNS name")
    return lowered


def parse_csr(body: bytes) -> CsrInfo:
    """Parse a PEM CSR and check what acmems and the CA need of it.

    Args:
        body: the raw request body.

    Returns:
        The checked CSR.

    Raises:
        CsrError: (415) not a PEM CSR, broken signature, unsupported key, or names that are not
            DNS names; the message says which.
    """
    match = _PEM_RE.search(body)
    if match is None:
        raise CsrError("the body is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)")
    try:
        csr = x509.load_pem_x509_csr(match.group(0).replace(b"NEW CERTIFICATE", b"CERTIFICATE"))
    except ValueError as exc:
        raise CsrError("the PEM certificate request cannot be decoded", log_detail=str(exc)) from None
    try:
        signature_ok = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, x509.UnsupportedGeneralNameType, TypeError) as exc:
        raise CsrError("the certificate request's key cannot be read", log_detail=str(exc)) from None
    except Exception as exc:  # cryptography raises its own UnsupportedAlgorithm for odd keys
        raise CsrError(
            "the certificate request uses an unsupported key algorithm; use RSA >= 2048 or EC P-256/P-384",
            log_detail=repr(exc),
        ) from None
    if not signature_ok:
        raise CsrError("the certificate request's signature is invalid")
    if isinstance(key, rsa.RSAPublicKey):
        key_type, key_size = "RSA", key.key_size
        if not _MIN_RSA_BITS <= key_size <= _MAX_RSA_BITS:
            raise CsrError(f"RSA key of {key_size} bits; use 2048 to 8192 bits (or EC P-256/P-384)")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise CsrError(f"EC curve {key.curve.name} is not accepted by CAs; use P-256 or P-384")
        key_type, key_size = "EC", key.curve.key_size
    else:
        raise CsrError(
            f"{type(key).__name__.removeprefix('_')} keys are not accepted by CAs; use RSA >= 2048 or EC P-256/P-384"
        )
    names, addresses = _identifiers(csr)
    canonical = csr.public_bytes(serialization.Encoding.PEM)
    return CsrInfo(canonical, names, key_type, key_size, addresses, body=body)


def _identifiers(csr: x509.CertificateSigningRequest) -> tuple[tuple[str, ...], frozenset[str]]:
    names: list[str] = []
    addresses: list[str] = []
    try:
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError) as exc:  # TypeError: cryptography's answer to a CN that is a BIT STRING
        raise CsrError(
            "the certificate request's subject cannot be read (a common name must be text)", log_detail=str(exc)
        ) from None
    for attribute in common_names:
        text = attribute.value
        if not isinstance(text, str):  # a BIT STRING (bytes): a CN is text, a host name
            raise CsrError("the common name is not text (a BIT STRING); put the host name there, or leave the CN out")
        if is_address(text):
            raise CsrError(
                f"the common name is an IP address ({text}); CAs refuse that: leave the CN out and name "
                "the address in the subjectAltName only"
            )
        names.append(_check_name(text, "common name"))
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrError("the certificate request's extensions cannot be read", log_detail=str(exc)) from None
    if san is not None:
        for general_name in san:
            if isinstance(general_name, x509.DNSName):
                names.append(_check_name(general_name.value, "subject alternative name"))
            elif isinstance(general_name, x509.IPAddress) and isinstance(
                general_name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
            ):
                addresses.append(str(general_name.value))  # allowed or refused by the auth blocks
            else:
                kinds: dict[type, str] = {
                    x509.IPAddress: "IP network",
                    x509.RFC822Name: "e-mail address",
                    x509.UniformResourceIdentifier: "URI",
                }
                kind = kinds.get(type(general_name), type(general_name).__name__)
                raise CsrError(
                    f"the request names a {kind} ({general_name.value}); only DNS names and IP addresses "
                    "can be certified here"
                )
    unique = tuple(dict.fromkeys(names + addresses))
    if not unique:
        raise CsrError("the certificate request names no domain (no CN and no DNS subjectAltName)")
    if len(unique) > MAX_NAMES:
        raise CsrError(f"the certificate request names {len(unique)} domains; CAs allow at most {MAX_NAMES}")
    return unique, frozenset(addresses)


def is_address(text: str) -> bool:
    """Whether ``text`` is an IP address (IPv4 or IPv6), not a DNS name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class CsrMemo:
    """Remembers the last ``size`` CSRs that parsed, by their exact bytes.

    Clients re-post the same CSR daily and a cache hit should cost next to nothing: the signature
    check and parse (the most expensive part of answering from the cache) happen once per CSR.
    """

    def __init__(self, size: int = 1024) -> None:
        self._entries: Lru[bytes, CsrInfo] = Lru(size)

    def parse(self, body: bytes) -> CsrInfo:
        """Like :func:`parse_csr`, answered from memory for bytes seen before."""
        info = self._entries.get(body)
        if info is None:
            info = parse_csr(body)
            self._entries.put(body, info)
        return info
