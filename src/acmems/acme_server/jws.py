"""The JWS of ACME requests (RFC 8555 §6.2, RFC 7515 flattened JSON): read, check, verify.

Pure: bytes and JSON in, a :class:`SignedRequest` (or an :class:`AcmeProblem`) out. Signatures are
checked with josepy (RSA, ECDSA) and cryptography (Ed25519, which josepy does not know); MAC
algorithms and ``none`` are refused for requests, and only MACs are taken for an external account
binding (§7.3.4)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from josepy import b64 as jose_b64
from josepy.errors import DeserializationError
from josepy.jwa import JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from acmems.acme_server.problems import AcmeProblem

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "EAB_ALGORITHMS",
    "SignedRequest",
    "b64decode",
    "b64encode",
    "check_eab",
    "parse_jws",
    "thumbprint",
    "verify",
]

ACCEPTED_ALGORITHMS = ("RS256", "ES256", "ES384", "ES512", "EdDSA")
EAB_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MIN_RSA_BITS = 2048


def b64encode(data: bytes) -> str:
    """base64url without padding (JOSE's, by josepy)."""
    return jose_b64.b64encode(data).decode()


def b64decode(text: object, what: str) -> bytes:
    """base64url (padding optional) to bytes.

    Raises:
        AcmeProblem: malformed, naming ``what``.
    """
    if not isinstance(text, str) or "=" in text.rstrip("=") or not text.isascii():
        raise AcmeProblem("malformed", f"{what} is not base64url text")
    try:
        return jose_b64.b64decode(text)
    except (binascii.Error, ValueError):
        raise AcmeProblem("malformed", f"{what} is not base64url text") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AcmeProblem("malformed", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A flattened JWS whose form is checked (its signature not yet: :func:`verify`)."""

    protected: dict[str, Any]
    payload: bytes  # decoded; empty for POST-as-GET
    signing_input: bytes
    signature: bytes
    alg: str
    url: str
    nonce: str | None
    jwk: dict[str, Any] | None
    kid: str | None

    @property
    def post_as_get(self) -> bool:
        return self.payload == b""

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object (malformed if it is not one)."""
        if self.post_as_get:
            raise AcmeProblem("malformed", "this resource needs a JSON payload, not POST-as-GET")
        return _json_object(self.payload, "the JWS payload")


def parse_jws(body: bytes | dict[str, Any], *, inner: bool = False) -> SignedRequest:
    """Read a flattened-JSON JWS and check its form (§6.2): one signature, a protected header only,
    an accepted ``alg``, a ``url``, exactly one of ``jwk``/``kid``, and a ``nonce`` unless ``inner``
    (keyChange's inner JWS, which must have none and a ``jwk``)."""
    envelope = body if isinstance(body, dict) else _json_object(body, "the request body")
    if "signatures" in envelope:
        raise AcmeProblem("malformed", "the JWS must have exactly one signature (flattened JSON serialization)")
    if "header" in envelope:
        raise AcmeProblem("malformed", "the JWS must not have an unprotected header")
    for member in ("protected", "payload", "signature"):
        if not isinstance(envelope.get(member), str):
            raise AcmeProblem("malformed", f"the JWS has no {member!r} (flattened JSON serialization)")
    protected_b64, payload_b64 = envelope["protected"], envelope["payload"]
    protected = _json_object(b64decode(protected_b64, "the JWS protected header"), "the JWS protected header")
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"the JWS algorithm {alg!r} is not accepted; use one of {', '.join(ACCEPTED_ALGORITHMS)}",
            algorithms=ACCEPTED_ALGORITHMS,
        )
    if protected.get("b64") is False:
        raise AcmeProblem("malformed", "the JWS unencoded payload option is not allowed")
    url = protected.get("url")
    if not isinstance(url, str):
        raise AcmeProblem("malformed", "the JWS protected header has no 'url'")
    jwk, kid = protected.get("jwk"), protected.get("kid")
    if (jwk is None) == (kid is None):
        raise AcmeProblem("malformed", "the JWS protected header must have exactly one of 'jwk' and 'kid'")
    if jwk is not None and not isinstance(jwk, dict):
        raise AcmeProblem("malformed", "the JWS 'jwk' is not a JSON object")
    if kid is not None and not isinstance(kid, str):
        raise AcmeProblem("malformed", "the JWS 'kid' is not a URL")
    nonce = protected.get("nonce")
    if inner:
        if nonce is not None or jwk is None:
            raise AcmeProblem("malformed", "the inner JWS of keyChange must have a 'jwk' and no 'nonce'")
    elif not isinstance(nonce, str) or not nonce:
        raise AcmeProblem("badNonce", "the JWS protected header has no 'nonce'")
    return SignedRequest(
        protected,
        b64decode(payload_b64, "the JWS payload"),
        f"{protected_b64}.{payload_b64}".encode(),
        b64decode(envelope["signature"], "the JWS signature"),
        alg,
        url,
        nonce if isinstance(nonce, str) else None,
        jwk,
        kid,
    )


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK.

    Raises:
        AcmeProblem: badPublicKey (not an RSA, EC or Ed25519 public key).
    """
    kty = jwk.get("kty")
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}.get(str(kty))
    if required is None or not all(isinstance(jwk.get(k), str) for k in required):
        raise AcmeProblem("badPublicKey", f"the JWK is not an RSA, EC or Ed25519 public key (kty {kty!r})")
    canonical = json.dumps({k: jwk[k] for k in required}, sort_keys=True, separators=(",", ":"))
    return b64encode(hashlib.sha256(canonical.encode()).digest())


def _public_key(jwk: dict[str, Any], alg: str) -> Any:
    kty = jwk.get("kty")
    if alg == "EdDSA":
        if kty != "OKP" or jwk.get("crv") != "Ed25519":
            raise AcmeProblem("badPublicKey", "EdDSA needs an Ed25519 key (kty OKP, crv Ed25519)")
        try:
            return Ed25519PublicKey.from_public_bytes(b64decode(jwk.get("x"), "the JWK's x"))
        except ValueError:
            raise AcmeProblem("badPublicKey", "the Ed25519 key cannot be read") from None
    if "d" in jwk:
        raise AcmeProblem("badPublicKey", "the JWK holds a private key; send the public key only")
    try:
        key = JWK.from_json(jwk)
    except (DeserializationError, ValueError, TypeError):
        raise AcmeProblem("badPublicKey", f"the JWK (kty {kty!r}) cannot be read as a public key") from None
    if alg == "RS256":
        if not isinstance(key, JWKRSA):
            raise AcmeProblem("badPublicKey", "RS256 needs an RSA key")
        bits = key.public_key().key.key_size
        if bits < _MIN_RSA_BITS:
            raise AcmeProblem("badPublicKey", f"an RSA key of {bits} bits; use at least {_MIN_RSA_BITS}")
    elif not isinstance(key, JWKEC) or jwk.get("crv") != _EC_CURVES[alg]:
        raise AcmeProblem("badPublicKey", f"{alg} needs an EC key on {_EC_CURVES[alg]}")
    return key.public_key().key


def verify(request: SignedRequest, jwk: dict[str, Any]) -> None:
    """Check the request's signature with ``jwk`` (the request's own, or its account's key).

    Raises:
        AcmeProblem: badPublicKey, or malformed when the signature does not verify.
    """
    key = _public_key(jwk, request.alg)
    if request.alg == "EdDSA":
        try:
            key.verify(request.signature, request.signing_input)
        except InvalidSignature:
            raise AcmeProblem("malformed", "the JWS signature does not verify") from None
        return
    algorithm = JWASignature.from_json(request.alg)
    if not algorithm.verify(key, request.signing_input, request.signature):
        raise AcmeProblem("malformed", "the JWS signature does not verify")


def check_eab(binding: object, account_jwk: dict[str, Any], url: str, keys: dict[str, bytes]) -> str:
    """Check an ``externalAccountBinding`` (§7.3.4): a MAC-signed JWS over the account key, for
    this ``url``, by one of ``keys`` (key id -> MAC key). Returns the key id.

    Raises:
        AcmeProblem: malformed (its form), unauthorized (unknown key id, wrong MAC).
    """
    if not isinstance(binding, dict):
        raise AcmeProblem("malformed", "externalAccountBinding is not a JWS object")
    for member in ("protected", "payload", "signature"):
        if not isinstance(binding.get(member), str):
            raise AcmeProblem("malformed", f"externalAccountBinding has no {member!r}")
    protected = _json_object(b64decode(binding["protected"], "the EAB protected header"), "the EAB protected header")
    alg, kid = protected.get("alg"), protected.get("kid")
    if alg not in EAB_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"the external account binding's algorithm {alg!r} is not accepted; use HS256, HS384 or HS512",
            algorithms=tuple(EAB_ALGORITHMS),
        )
    if "nonce" in protected:
        raise AcmeProblem("malformed", "the external account binding must not have a nonce")
    if protected.get("url") != url:
        raise AcmeProblem("unauthorized", "the external account binding's url is not this newAccount URL")
    if not isinstance(kid, str) or kid not in keys:
        raise AcmeProblem("unauthorized", f"the external account binding's key id {kid!r} is not known here")
    signing_input = f"{binding['protected']}.{binding['payload']}".encode()
    expected = hmac.new(keys[kid], signing_input, EAB_ALGORITHMS[str(alg)]).digest()
    if not hmac.compare_digest(expected, b64decode(binding["signature"], "the EAB signature")):
        raise AcmeProblem("unauthorized", f"the external account binding's MAC does not match the key of {kid!r}")
    bound = _json_object(b64decode(binding["payload"], "the EAB payload"), "the EAB payload")
    if bound != account_jwk:
        raise AcmeProblem("unauthorized", "the external account binding is for another account key")
    return kid
