"""One exception root for acmems; every error carries what the HTTP layer needs to answer.

Handlers never build error responses themselves: ``web.py`` turns an :class:`AcmemsError` into a
response with its ``status``, its one-line ``message`` and, where set, ``Retry-After``. The
``log_detail`` is for the operator's log only (it may name internals a client should not see).
"""

from __future__ import annotations

__all__ = [
    "AcmemsError",
    "AuthError",
    "CaError",
    "ConfigError",
    "CsrError",
    "DnsUpdateError",
    "IssuanceTimeout",
    "RequestError",
]


class AcmemsError(Exception):
    """Root of every error acmems raises on purpose.

    Args:
        message: one line for the client: what went wrong and what to fix.
        status: the HTTP status this error is answered with.
        retry_after: seconds for a ``Retry-After`` header, if the client should retry later.
        log_detail: extra text for the server log only.
    """

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        log_detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message.replace("\n", " ").strip()
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.log_detail = log_detail


class ConfigError(AcmemsError):
    """A configuration file is invalid; names where (file, line, section, key) and what is valid."""

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
        super().__init__(f"{prefix}: {message}" if prefix else message, status=500)


class RequestError(AcmemsError):
    """The HTTP request itself is unacceptable (404, 405, 408, 411, 413, ...)."""


class AuthError(AcmemsError):
    """The client is not allowed to get this certificate (403)."""

    status = 403


class CsrError(AcmemsError):
    """The body is not an acceptable CSR (415)."""

    status = 415


class CaError(AcmemsError):
    """The ACME CA refused, failed or could not be reached (421, 429, 502, 503)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: int | None = None,
        log_detail: str = "",
        problem_type: str | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after, log_detail=log_detail)
        self.problem_type = problem_type


class DnsUpdateError(AcmemsError):
    """An RFC 2136 update or lookup failed (502 refused, 503 unreachable)."""


class IssuanceTimeout(AcmemsError):
    """The issuance still runs when the request's time is up (504); it goes on in the background."""

    status = 504
