"""A raw ACME client for the protocol's edges: every JWS built here (so a test can break any part of
it), sent with http.client (so a test picks the source address and the Host header)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["Answer", "RawClient", "b64", "ec_key", "jwk_of"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def jwk_of(key: Key) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def _sign(key: Key, data: bytes) -> tuple[str, bytes]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA", key.sign(data)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return "ES256", r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        """The problem's type without the ACME prefix ("" for a non-problem)."""
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return str(self.json()["type"]).removeprefix("urn:ietf:params:acme:error:")
        return ""


@dataclass
class RawClient:
    """One account key against acmems' ACME listener on 127.0.0.1:``port``."""

    port: int
    ca_file: Path
    host: str = ""  # the Host header (default 127.0.0.1:PORT)
    source: str = "127.0.0.1"
    key: Key = field(default_factory=ec_key)
    kid: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://{self.host or f'127.0.0.1:{self.port}'}"

    def request(
        self, method: str, url: str, body: bytes | None = None, content_type: str = "application/jose+json"
    ) -> Answer:
        path = url.removeprefix(self.base) if url.startswith("https://") else url
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, source_address=(self.source, 0), timeout=60
        )
        try:
            headers = {"Host": self.host or f"127.0.0.1:{self.port}"}
            if body is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def get_directory(self) -> dict[str, Any]:
        self.directory = self.request("GET", "/directory").json()
        return self.directory

    def nonce(self) -> str:
        if not self.directory:
            self.get_directory()
        return self.request("HEAD", self.directory["newNonce"]).headers["replay-nonce"]

    def jws(
        self,
        url: str,
        payload: Any,
        *,
        nonce: str | None = None,
        use_jwk: bool = False,
        protected: dict[str, Any] | None = None,
        key: Key | None = None,
    ) -> bytes:
        """A flattened JWS: ``payload`` None is POST-as-GET; ``protected`` overrides header fields."""
        signer = key or self.key
        header: dict[str, Any] = {"url": url, "nonce": nonce or self.nonce()}
        if use_jwk or self.kid is None:
            header["jwk"] = jwk_of(signer)
        else:
            header["kid"] = self.kid
        alg, _ = _sign(signer, b"")
        header["alg"] = alg
        header.update(protected or {})
        header = {k: v for k, v in header.items() if v is not None}
        protected_b64 = b64(json.dumps(header).encode())
        payload_b64 = "" if payload is None else b64(json.dumps(payload).encode())
        _, signature = _sign(signer, f"{protected_b64}.{payload_b64}".encode())
        return json.dumps({"protected": protected_b64, "payload": payload_b64, "signature": b64(signature)}).encode()

    def post(self, url: str, payload: Any, **options: Any) -> Answer:
        return self.request("POST", url, self.jws(url, payload, **options))

    def eab(self, kid: str, mac_key: bytes, url: str, alg: str = "HS256") -> dict[str, str]:
        protected = b64(json.dumps({"alg": alg, "kid": kid, "url": url}).encode())
        payload = b64(json.dumps(jwk_of(self.key)).encode())
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signature = hmac.new(mac_key, f"{protected}.{payload}".encode(), digest).digest()
        return {"protected": protected, "payload": payload, "signature": b64(signature)}

    def new_account(self, eab: tuple[str, bytes] | None = None) -> Answer:
        url = self.get_directory()["newAccount"]
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if eab is not None:
            payload["externalAccountBinding"] = self.eab(eab[0], eab[1], url)
        answer = self.post(url, payload, use_jwk=True)
        if answer.status in (200, 201):
            self.kid = answer.headers["location"]
        return answer

    def new_order(self, names: list[str], **extra: Any) -> Answer:
        identifiers = [{"type": "ip" if name[0].isdigit() else "dns", "value": name} for name in names]
        return self.post(self.directory["newOrder"], {"identifiers": identifiers, **extra})
