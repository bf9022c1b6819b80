"""What acmems' ACME server keeps (RFC 8555 §7.1): accounts, orders, authorizations and the
certificates it handed out. Small frozen values with a JSON form; the stores (files, or the
cluster database) keep that form, nothing else."""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "AcmeAccount",
    "AcmeAuthz",
    "AcmeCertificate",
    "AcmeOrder",
    "Identifier",
    "from_json",
    "new_id",
    "to_json",
]

R = TypeVar("R", "AcmeAccount", "AcmeOrder", "AcmeAuthz", "AcmeCertificate")


def new_id() -> str:
    """A fresh identifier for a URL: 128 random bits, base64url."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class Identifier:
    """An identifier of an order (§9.7.7): ``dns`` (a name, ``*.`` for a wildcard) or ``ip``."""

    type: str
    value: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True, slots=True)
class AcmeAccount:
    """An ACME client's account, bound to one auth block (``block``) for its whole life."""

    id: str
    jwk: str  # the account key as canonical JSON
    thumbprint: str  # RFC 7638, base64url
    block: str
    status: str = "valid"  # valid | deactivated
    contact: tuple[str, ...] = ()
    eab_kid: str | None = None  # the block named in its external account binding, if it had one
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class AcmeOrder:
    """An order; ``status`` as stored (``ready`` follows from its authorizations being valid)."""

    id: str
    account: str
    identifiers: tuple[Identifier, ...]
    authorizations: tuple[str, ...]
    expires: float
    status: str = "pending"  # pending | ready | processing | valid | invalid
    profile: str | None = None
    replaces: str | None = None
    csr: str | None = None  # the finalized CSR (PEM), kept while processing
    certificate: str | None = None  # the id of its certificate once valid
    error: str | None = None  # the problem document (JSON) of an invalid order
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class AcmeAuthz:
    """An authorization: ``valid`` at once when the block's policy is the proof, else ``pending``
    with one http-01 challenge acmems validates itself (``acme-challenge = http-01``)."""

    id: str
    account: str
    identifier: Identifier
    expires: float
    status: str = "valid"  # pending | valid | invalid | deactivated
    wildcard: bool = False
    challenge_type: str = "http-01"  # the challenge shown (valid already, or to answer)
    token: str = ""
    challenge_status: str = "valid"  # pending | processing | valid | invalid
    validated: float | None = None
    error: str | None = None  # the problem document (JSON) of a failed validation


@dataclass(frozen=True, slots=True)
class AcmeCertificate:
    """A certificate acmems gave an ACME client: the chain, who ordered it, its serial (hex)."""

    id: str
    account: str
    order: str
    serial: str
    chain: str
    storage: str = ""  # the [storage] it is cached in (for revocation and renewalInfo)
    revoked: bool = False


def to_json(record: AcmeAccount | AcmeOrder | AcmeAuthz | AcmeCertificate) -> str:
    """The record's stored form."""
    return json.dumps(dataclasses.asdict(record), sort_keys=True, separators=(",", ":"))


def from_json(kind: type[R], text: str | bytes) -> R:
    """A record of ``kind`` from its stored form.

    Raises:
        ValueError: not a stored record of that kind.
    """
    try:
        data: dict[str, Any] = json.loads(text)
        if kind is AcmeOrder:
            data["identifiers"] = tuple(Identifier(**i) for i in data["identifiers"])
            data["authorizations"] = tuple(data["authorizations"])
        elif kind is AcmeAuthz:
            data["identifier"] = Identifier(**data["identifier"])
        elif kind is AcmeAccount:
            data["contact"] = tuple(data["contact"])
        return kind(**data)
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a stored {kind.__name__}: {exc}") from None
