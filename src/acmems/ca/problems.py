"""What the CA answered, turned into what the client is told: problem types (RFC 8555 §6.7) and
transport failures become statuses with one-line messages; the certificate chain is laid out as the
original answered it. Pure functions of the CA's answers."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

import requests
from acme import errors as acme_errors
from acme import messages
from josepy.errors import DeserializationError

from acmems.core.order_steps import Problem
from acmems.errors import AcmemsError, CaError, Kind

__all__ = [
    "MAX_RETRY_AFTER",
    "ca_error",
    "falls_over",
    "format_chain",
    "parse_retry_after",
    "problem_of",
    "retry_after_seconds",
]

# Problem types (RFC 8555 §6.7) that mean "the CA could not validate": answered with 421.
_VALIDATION_PROBLEMS = {
    "caa",
    "connection",
    "dns",
    "incorrectResponse",
    "tls",
    "unauthorized",
    "rejectedIdentifier",
    "unsupportedIdentifier",
}


#: the longest pause a CA's ``Retry-After`` can ask for here (Let's Encrypt's longest window is a week)
MAX_RETRY_AFTER = 7 * 86400.0
_DELAY_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str, now: float) -> float | None:
    """A ``Retry-After`` value in seconds from ``now`` (Unix time), in ``[0, MAX_RETRY_AFTER]``:
    ``delay-seconds`` (digits only) or an HTTP-date (RFC 9110 §10.2.3); None for anything else. Pure."""
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        # compared as text first: a few hundred digits are still "a long time", not an overflow
        if len(value.lstrip("0")) > 12:
            return MAX_RETRY_AFTER
        return min(float(int(value)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110: an HTTP-date is in GMT
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """The ``Retry-After`` of a CA's answer in seconds (see :func:`parse_retry_after`), or None."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    return parse_retry_after(value, time.time())


def format_chain(fullchain_pem: str) -> bytes:
    """Leaf then chain as PEM blocks separated by a blank line, as the original answered."""
    blocks = []
    for part in fullchain_pem.split("-----END CERTIFICATE-----"):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:].strip() + "\n-----END CERTIFICATE-----\n")
    if not blocks:
        raise CaError("the CA sent no certificate", kind=Kind.CA_REFUSED, log_detail=fullchain_pem[:200])
    return "\n".join(blocks).encode()


def problem_of(error: messages.Error | None) -> Problem | None:
    """The CA's problem document as the client is told it (short type and detail)."""
    if error is None:
        return None
    return Problem(error.code or error.typ, error.detail or error.title or "")


def ca_error(exc: Exception, server: str, response: requests.Response | None = None) -> AcmemsError:
    """Turn a failure talking to the CA into the error the client is answered with."""
    if isinstance(exc, AcmemsError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return CaError(
            "cannot reach the ACME CA: its TLS certificate is not trusted (check ca-bundle); retry later",
            kind=Kind.CA_UNREACHABLE,
            log_detail=f"{server}: {exc}",
        )
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return CaError(
            "the ACME CA cannot be reached; retry later", kind=Kind.CA_UNREACHABLE, log_detail=f"{server}: {exc}"
        )
    if isinstance(exc, messages.Error):
        code = exc.code or exc.typ
        detail = exc.detail or exc.title or ""
        if code == "rateLimited":
            retry = retry_after_seconds(response)
            return CaError(
                f"the CA rate-limited this request (rateLimited: {detail})",
                kind=Kind.RATE_LIMITED,
                retry_after=int(retry) if retry is not None else None,
                problem_type=code,
            )
        if code in _VALIDATION_PROBLEMS:
            return CaError(f"the CA refused: {code}: {detail}", kind=Kind.VALIDATION_FAILED, problem_type=code)
        if code == "serverInternal":
            return CaError(
                f"the CA failed internally ({detail}); retry later", kind=Kind.CA_UNREACHABLE, problem_type=code
            )
        return CaError(f"the CA refused: {code}: {detail}", kind=Kind.CA_REFUSED, problem_type=code)
    if isinstance(exc, acme_errors.Error | DeserializationError | ValueError | KeyError):
        return CaError(
            "the ACME CA sent an answer acmems cannot use; see the server log",
            kind=Kind.CA_REFUSED,
            log_detail=f"{server}: {type(exc).__name__}: {exc}",
        )
    return AcmemsError("internal error; see the server log", kind=Kind.INTERNAL, log_detail=repr(exc))


def falls_over(exc: BaseException, request_timeout: float) -> bool:
    """Whether the next CA of an auth block's ``ca`` list should be tried after ``exc`` from this one:
    the CA is unreachable, failed (5xx, ``serverInternal``), timed out, or rate-limited us for longer
    than the client waits. Not for what the next CA would say as well (``badCSR``,
    ``rejectedIdentifier``, ``caa``, ``unauthorized``, a failed validation), nor for our own limits."""
    if not isinstance(exc, CaError):
        return False
    if exc.kind is Kind.CA_UNREACHABLE:
        return True
    return (
        exc.kind is Kind.RATE_LIMITED
        and exc.problem_type == "rateLimited"
        and (exc.retry_after is None or exc.retry_after > request_timeout)
    )
