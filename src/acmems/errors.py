"""One exception root for acmems, and the one table that turns an error's kind into an HTTP answer.

An error says *what* went wrong (its :class:`Kind`) and carries the data to explain it (the one-line
``message``, the CA's problem type, a ``Retry-After``); it never chooses a status itself.
:data:`ANSWERS` maps each kind to its status (and the ``Retry-After`` it gets when the raise site
gives none); :func:`http_answer` is the only place an error becomes status, body and headers. The
``log_detail`` is for the operator's log only (it may name internals a client should not see).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "ANSWERS",
    "AcmemsError",
    "Answer",
    "AuthError",
    "CaError",
    "ConfigError",
    "CsrError",
    "DatabaseError",
    "DnsUpdateError",
    "HttpAnswer",
    "IssuanceTimeout",
    "Kind",
    "LeaseLost",
    "RequestError",
    "http_answer",
]


class Kind(enum.Enum):
    """What went wrong, in the terms the client is answered in."""

    BAD_REQUEST = "bad request"  # the request cannot be used at all (no peer address)
    WILDCARD_NEEDS_DNS01 = "wildcard needs DNS-01"
    NOT_AUTHORIZED = "not authorized"  # address, HMAC or names (the auth blocks)
    NOT_FOUND = "not found"
    METHOD_NOT_ALLOWED = "method not allowed"
    BODY_TIMEOUT = "body timeout"
    LENGTH_REQUIRED = "length required"
    TOO_LARGE = "too large"
    NOT_A_CSR = "not an acceptable CSR"
    VALIDATION_FAILED = "validation failed"  # the CA could not validate a name
    RATE_LIMITED = "rate limited"  # by the CA
    HEADERS_TOO_LARGE = "headers too large"
    INTERNAL = "internal error"
    CONFIG = "configuration error"
    CA_REFUSED = "CA refused"
    CA_UNREACHABLE = "CA unreachable"  # also: failed internally, or too slow
    DNS_REFUSED = "DNS refused"
    DNS_UNREACHABLE = "DNS unreachable"
    UNAVAILABLE = "unavailable"  # this acmems cannot answer now (a worker lost its main process)
    DATABASE_UNAVAILABLE = "database unavailable"  # the cluster database does not answer
    STILL_ISSUING = "still issuing"


@dataclass(frozen=True, slots=True)
class Answer:
    """How a kind of error is answered: the status, and ``Retry-After`` when the raise site gives none."""

    status: int
    retry_after: int | None = None


#: The one table from error kinds to HTTP answers (README "Answers" and docs/configuration.md list them).
ANSWERS: Mapping[Kind, Answer] = MappingProxyType(
    {
        Kind.BAD_REQUEST: Answer(400),
        Kind.WILDCARD_NEEDS_DNS01: Answer(400),
        Kind.NOT_AUTHORIZED: Answer(403),
        Kind.NOT_FOUND: Answer(404),
        Kind.METHOD_NOT_ALLOWED: Answer(405),
        Kind.BODY_TIMEOUT: Answer(408),
        Kind.LENGTH_REQUIRED: Answer(411),
        Kind.TOO_LARGE: Answer(413),
        Kind.NOT_A_CSR: Answer(415),
        Kind.VALIDATION_FAILED: Answer(421),
        Kind.RATE_LIMITED: Answer(429, 3600),
        Kind.HEADERS_TOO_LARGE: Answer(431),
        Kind.INTERNAL: Answer(500),
        Kind.CONFIG: Answer(500),
        Kind.CA_REFUSED: Answer(502),
        Kind.DNS_REFUSED: Answer(502),
        Kind.CA_UNREACHABLE: Answer(503, 30),
        Kind.DNS_UNREACHABLE: Answer(503, 30),
        Kind.UNAVAILABLE: Answer(503, 5),
        Kind.DATABASE_UNAVAILABLE: Answer(503, 10),
        Kind.STILL_ISSUING: Answer(504, 30),
    }
)

_INTERNAL_LINE = "internal error; see the acmems log"


class AcmemsError(Exception):
    """Root of every error acmems raises on purpose.

    Args:
        message: one line for the client: what went wrong and what to fix.
        kind: what went wrong; :data:`ANSWERS` gives the HTTP answer (default: the class's kind).
        retry_after: seconds for a ``Retry-After`` header (default: the kind's, if it has one).
        log_detail: extra text for the server log only.
    """

    kind: Kind = Kind.INTERNAL

    def __init__(
        self, message: str, *, kind: Kind | None = None, retry_after: int | None = None, log_detail: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message.replace("\n", " ").strip()
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after if retry_after is not None else ANSWERS[self.kind].retry_after
        self.log_detail = log_detail

    @property
    def status(self) -> int:
        """The HTTP status this error is answered with (from :data:`ANSWERS`)."""
        return ANSWERS[self.kind].status


class ConfigError(AcmemsError):
    """A configuration file is invalid; names where (file, line, section, key) and what is valid."""

    kind = Kind.CONFIG

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.section = section
        self.key = key
        where = ""
        if file is not None:
            where = file if line is None else f"{file}:{line}"
        context = []
        if section is not None:
            context.append(f"[{section}]")
        if key is not None:
            context.append(key)
        prefix = ": ".join(p for p in (where, " ".join(context)) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RequestError(AcmemsError):
    """The HTTP request itself is unacceptable (404, 405, 408, 411, 413, 431, ...)."""


class AuthError(AcmemsError):
    """The client is not allowed to get this certificate."""

    kind = Kind.NOT_AUTHORIZED


class CsrError(AcmemsError):
    """The body is not an acceptable CSR."""

    kind = Kind.NOT_A_CSR


class CaError(AcmemsError):
    """The ACME CA refused, failed or could not be reached; ``problem_type`` is its RFC 8555 §6.7 type.
    ``held``: not the CA's answer now, but a pause it asked for earlier (nothing new to note)."""

    def __init__(
        self,
        message: str,
        *,
        kind: Kind,
        retry_after: int | None = None,
        log_detail: str = "",
        problem_type: str | None = None,
        held: bool = False,
    ) -> None:
        super().__init__(message, kind=kind, retry_after=retry_after, log_detail=log_detail)
        self.problem_type = problem_type
        self.held = held


class DnsUpdateError(AcmemsError):
    """An RFC 2136 update or lookup failed (refused, or the server unreachable)."""


class DatabaseError(AcmemsError):
    """The cluster database did not answer (or not in time); what needs it is answered 503."""

    kind = Kind.DATABASE_UNAVAILABLE


class IssuanceTimeout(AcmemsError):
    """The issuance still runs when the request's time is up; it goes on in the background."""

    kind = Kind.STILL_ISSUING


class LeaseLost(AcmemsError):
    """A cluster instance lost the lease of the order it drove: another carries it on (504, as
    for an order still running: the client posts again and gets the result)."""

    kind = Kind.STILL_ISSUING


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the client is sent for an error: status, one text line, extra headers."""

    status: int
    line: str
    headers: Mapping[str, str]


def http_answer(exc: BaseException) -> HttpAnswer:
    """The answer for ``exc``: an :class:`AcmemsError` by its kind, anything else as a bare 500
    (whose details go to the log only)."""
    if not isinstance(exc, AcmemsError):
        return HttpAnswer(500, _INTERNAL_LINE, {})
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    return HttpAnswer(exc.status, exc.message, headers)
