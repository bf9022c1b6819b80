"""What the CA answered, turned into what the client is told: problem types (RFC 8555 §6.7) and
transport failures become statuses with one-line messages; the certificate chain is laid out as the
original answered it. Pure functions of the CA's answers."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import requests
from acme import errors as acme_errors
from acme import messages
from josepy.errors import DeserializationError

from acmems.errors import AcmemsError, CaError

__all__ = ["CA_DOWN_RETRY_AFTER", "authorization_failure", "ca_error", "format_chain", "retry_after_seconds"]

CA_DOWN_RETRY_AFTER = 30
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


def retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def format_chain(fullchain_pem: str) -> bytes:
    """Leaf then chain as PEM blocks separated by a blank line, as the original answered."""
    blocks = []
    for part in fullchain_pem.split("-----END CERTIFICATE-----"):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:].strip() + "\n-----END CERTIFICATE-----\n")
    if not blocks:
        raise CaError("the CA sent no certificate", status=502, log_detail=fullchain_pem[:200])
    return "\n".join(blocks).encode()


def ca_error(exc: BaseException, server: str, response: requests.Response | None = None) -> AcmemsError:
    """Turn a failure talking to the CA into the error the client is answered with."""
    if isinstance(exc, AcmemsError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return CaError(
            "cannot reach the ACME CA: its TLS certificate is not trusted (check ca-bundle); retry later",
            status=503,
            retry_after=CA_DOWN_RETRY_AFTER,
            log_detail=f"{server}: {exc}",
        )
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return CaError(
            "the ACME CA cannot be reached; retry later",
            status=503,
            retry_after=CA_DOWN_RETRY_AFTER,
            log_detail=f"{server}: {exc}",
        )
    if isinstance(exc, messages.Error):
        code = exc.code or exc.typ
        detail = exc.detail or exc.title or ""
        if code == "rateLimited":
            retry = retry_after_seconds(response)
            return CaError(
                f"the CA rate-limited this request (rateLimited: {detail})",
                status=429,
                retry_after=int(retry) if retry is not None else 3600,
                problem_type=code,
            )
        if code in _VALIDATION_PROBLEMS:
            return CaError(f"the CA refused: {code}: {detail}", status=421, problem_type=code)
        if code == "serverInternal":
            return CaError(
                f"the CA failed internally ({detail}); retry later",
                status=503,
                retry_after=CA_DOWN_RETRY_AFTER,
                problem_type=code,
            )
        return CaError(f"the CA refused: {code}: {detail}", status=502, problem_type=code)
    if isinstance(exc, acme_errors.Error | DeserializationError | ValueError | KeyError):
        return CaError(
            "the ACME CA sent an answer acmems cannot use; see the server log",
            status=502,
            log_detail=f"{server}: {type(exc).__name__}: {exc}",
        )
    return AcmemsError("internal error; see the server log", status=500, log_detail=repr(exc))


def authorization_failure(authzr: messages.AuthorizationResource) -> CaError:
    name = authzr.body.identifier.value
    for challb in authzr.body.challenges:
        if challb.error is not None:
            code = challb.error.code or challb.error.typ
            return CaError(
                f"the CA could not validate {name}: {code}: {challb.error.detail}",
                status=421,
                problem_type=code,
            )
    return CaError(f"the CA could not validate {name}: authorization is {authzr.body.status.name}", status=421)
