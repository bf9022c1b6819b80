"""ACME problems (RFC 8555 §6.7, RFC 7807): one table from problem type to HTTP status, the
exception the server raises, and the translation of acmems' own errors into problems."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from acmems.errors import AcmemsError, CaError, Kind

__all__ = ["PROBLEM_STATUS", "AcmeProblem", "from_error", "problem_from_json"]

ACME_ERROR = "urn:ietf:params:acme:error:"

#: The one table from ACME error types to HTTP answers.
PROBLEM_STATUS: Mapping[str, int] = MappingProxyType(
    {
        "accountDoesNotExist": 400,
        "alreadyReplaced": 409,
        "alreadyRevoked": 400,
        "badCSR": 400,
        "badNonce": 400,
        "badPublicKey": 400,
        "badRevocationReason": 400,
        "badSignatureAlgorithm": 400,
        "caa": 403,
        "compound": 403,
        "connection": 400,
        "conflict": 409,  # keyChange to a key another account has
        "dns": 400,
        "externalAccountRequired": 403,
        "incorrectResponse": 403,
        "invalidContact": 400,
        "malformed": 400,
        "notFound": 404,  # reported as malformed with 404 (RFC 8555 has no such type)
        "orderNotReady": 403,
        "rateLimited": 429,
        "rejectedIdentifier": 400,
        "serverInternal": 500,
        "tls": 400,
        "unauthorized": 403,
        "unsupportedContact": 400,
        "unsupportedIdentifier": 400,
        "unsupportedMediaType": 415,  # malformed with 415: Content-Type is not application/jose+json
        "userActionRequired": 403,
    }
)
_AS_MALFORMED = {"notFound", "unsupportedMediaType", "conflict"}
_UNAVAILABLE = {Kind.CA_UNREACHABLE, Kind.DNS_UNREACHABLE, Kind.UNAVAILABLE, Kind.DATABASE_UNAVAILABLE}


@dataclass(slots=True)
class AcmeProblem(Exception):
    """A problem document to answer with. ``kind`` is a key of :data:`PROBLEM_STATUS`."""

    kind: str
    detail: str
    status: int | None = None  # default: the table's
    retry_after: int | None = None
    subproblems: Sequence[dict[str, Any]] = ()
    location: str | None = None  # keyChange conflict: the other account
    algorithms: Sequence[str] = ()  # badSignatureAlgorithm: what is accepted
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else PROBLEM_STATUS.get(self.kind, 400)

    @property
    def type_urn(self) -> str:
        return ACME_ERROR + ("malformed" if self.kind in _AS_MALFORMED else self.kind)

    def document(self) -> dict[str, Any]:
        """The RFC 7807 body."""
        body: dict[str, Any] = {"type": self.type_urn, "detail": self.detail, "status": self.http_status}
        if self.subproblems:
            body["subproblems"] = list(self.subproblems)
        if self.algorithms:
            body["algorithms"] = list(self.algorithms)
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after  # an extension member: an invalid order keeps it
        return body | self.extra

    def to_json(self) -> str:
        return json.dumps(self.document())


def problem_from_json(text: str) -> AcmeProblem:
    """A stored problem document (an invalid order's error) as a problem again."""
    data = json.loads(text)
    kind = str(data.get("type", "")).removeprefix(ACME_ERROR) or "serverInternal"
    return AcmeProblem(kind, str(data.get("detail", "")), status=data.get("status"), retry_after=data.get("retryAfter"))


def from_error(exc: AcmemsError) -> AcmeProblem:
    """The problem an ACME client reads for one of acmems' errors: the upstream CA's own type
    where it gave one, the quota's and rate limit's ``Retry-After`` kept."""
    retry = exc.retry_after
    kind = exc.problem_type if isinstance(exc, CaError) else None
    if kind is not None and kind in PROBLEM_STATUS:
        status = 503 if exc.kind in _UNAVAILABLE else None
        return AcmeProblem(kind, exc.message, status=status, retry_after=retry if kind == "rateLimited" else None)
    if exc.kind is Kind.RATE_LIMITED:
        return AcmeProblem("rateLimited", exc.message, retry_after=retry)
    if exc.kind is Kind.NOT_AUTHORIZED:
        return AcmeProblem("unauthorized", exc.message)
    if exc.kind is Kind.NOT_A_CSR:
        return AcmeProblem("badCSR", exc.message)
    if exc.kind is Kind.WILDCARD_NEEDS_DNS01:
        return AcmeProblem("rejectedIdentifier", exc.message)
    if exc.kind is Kind.VALIDATION_FAILED:
        return AcmeProblem("unauthorized", exc.message)
    if exc.kind in _UNAVAILABLE:
        return AcmeProblem("serverInternal", exc.message, status=503, retry_after=retry)
    return AcmeProblem("serverInternal", exc.message)
