"""HTTP plumbing on aiohttp's low-level server (no router, no middleware: a cache hit and a challenge
answer should cost next to nothing): one-line answers, the header limits, path routing, and the
HTTP-01 challenge handler.

Errors become answers in one place (:func:`answering_errors`, through :func:`acmems.errors.http_answer`).
Malformed HTTP that aiohttp's parser rejects gets a one-line answer too (:class:`OneLineErrorServer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from acmems.challenges.http01 import Http01Solver, looks_like_token
from acmems.errors import AcmemsError, Kind, RequestError, http_answer
from acmems.metrics import Metrics

__all__ = [
    "MAX_FIELD_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_FIELDS",
    "Handler",
    "OneLineErrorServer",
    "Routes",
    "answering_errors",
    "challenge_handler",
    "socket_peer",
    "text_answer",
]

log = logging.getLogger("acmems.http")
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# The header block of one request, as nginx limits it (large_client_header_buffers 4 8k) and
# Apache counts it (LimitRequestFields 100). One field stays within aiohttp's 8190 bytes.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_FIELDS = 100
MAX_FIELD_BYTES = 8190
# The parser names only its limit when a line is too long: the request line gets a limit of its own
# (two bytes more) so that a field over MAX_FIELD_BYTES can be told apart (431) from a long path (400).
_MAX_REQUEST_LINE = MAX_FIELD_BYTES + 2
_TOO_MANY_HEADERS = "Too many headers"
# Fields the parser lets through (each name + value within MAX_FIELD_BYTES) that cannot add up to
# more than MAX_HEADER_BYTES: below this count there is nothing to add up.
_FIELDS_ALWAYS_WITHIN = MAX_HEADER_BYTES // (MAX_FIELD_BYTES + 4)


def text_answer(status: int, line: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """One text line as the whole answer."""
    return web.Response(status=status, text=line + "\n", content_type="text/plain", headers=headers)


def _check_header_size(request: web.BaseRequest) -> None:
    if len(request.raw_headers) <= _FIELDS_ALWAYS_WITHIN:
        return
    size = sum(len(name) + len(value) + 4 for name, value in request.raw_headers)  # "name: value\r\n"
    if size > MAX_HEADER_BYTES:
        raise RequestError(
            f"the request's header fields have {size} bytes; this server accepts at most {MAX_HEADER_BYTES} bytes",
            kind=Kind.HEADERS_TOO_LARGE,
        )


def answering_errors(handler: Handler) -> Handler:
    """``handler`` behind the header limits, with every error answered as its kind says."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        try:
            _check_header_size(request)
            return await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, AcmemsError):
                log.error("internal error while answering %s %s", request.method, request.path, exc_info=exc)
            answer = http_answer(exc)
            response = text_answer(answer.status, answer.line, answer.headers)
            if not request.content.is_eof():
                # Answered before the body was read (403/411/413/431): do not wait for it, close.
                response.force_close()
            return response

    return answer


class _OneLineErrors(RequestHandler):
    """aiohttp's handler, but requests its parser rejects get one line and a one-line log entry;
    too many or too long header fields get 431 (RFC 6585 §5)."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        text = getattr(exc, "message", None) or (str(exc) if exc is not None else message) or ""
        reason = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
        first = reason[0] if reason else "malformed request"
        if (isinstance(exc, LineTooLong) and exc.args[1] == MAX_FIELD_BYTES) or _TOO_MANY_HEADERS in first:
            status = 431
        peer = request.transport.get_extra_info("peername") if request.transport else None
        log.info("bad HTTP request from %s: %d %s", peer[0] if peer else "?", status, first[:200])
        if status >= 500:
            return text_answer(status, "internal error; see the acmems log")
        if status == 431:
            return text_answer(
                431,
                f"request header fields too large (at most {MAX_HEADER_FIELDS} fields of {MAX_FIELD_BYTES} bytes, "
                f"{MAX_HEADER_BYTES} bytes in all)",
            )
        return text_answer(status, f"bad request: {first[:200]}")


class OneLineErrorServer(web.Server):
    """aiohttp's low-level server with :class:`_OneLineErrors` connection handlers and our header limits."""

    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        kwargs.setdefault("max_headers", MAX_HEADER_FIELDS)
        kwargs.setdefault("max_field_size", MAX_FIELD_BYTES)
        kwargs.setdefault("max_line_size", _MAX_REQUEST_LINE)
        super().__init__(handler, **kwargs)

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _OneLineErrors(self, loop=self._loop, **kwargs)


def socket_peer(request: web.BaseRequest) -> str:
    """The client's address: the socket's peer, never X-Forwarded-For / X-Real-IP (a client could
    claim any address there)."""
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if not peername:
        raise RequestError("cannot tell the client's address", kind=Kind.BAD_REQUEST)
    return str(peername[0])


class Routes:
    """Paths to ``(methods, handler)``; 404 and 405 (with ``Allow``) for the rest."""

    def __init__(self, table: Mapping[str, tuple[tuple[str, ...], Handler]], not_found: str) -> None:
        self.table = dict(table)
        self.not_found = not_found

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self.table.get(request.path)
        if route is None:
            raise RequestError(self.not_found, kind=Kind.NOT_FOUND)
        methods, handler = route
        if request.method not in methods:
            allowed = ", ".join(methods)
            return text_answer(405, f"method {request.method} not allowed; use {allowed}", {"Allow": allowed})
        return await handler(request)


def challenge_handler(solver: Http01Solver, metrics: Metrics) -> Handler:
    """The handler for an http01 verification's listeners: ``GET /.well-known/acme-challenge/<token>``.

    Any Host header; 404 for unknown tokens so a proxy can try the next acmems, and for anything not
    shaped like a token without looking it up. It raises nothing, so it needs no
    :func:`answering_errors` around it, only the header limit.
    """
    prefix = "/.well-known/acme-challenge/"
    # the labelled counters looked up once, not at every request
    answered, unknown, not_a_token, unavailable = (
        metrics.challenge_requests.labels(answer) for answer in ("answered", "unknown", "not-a-token", "unavailable")
    )

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        try:
            _check_header_size(request)
        except RequestError as exc:
            return text_answer(exc.status, exc.message)
        path = request.path
        if request.method in ("GET", "HEAD") and path.startswith(prefix):
            token = path[len(prefix) :]
            if not looks_like_token(token):
                not_a_token.inc()
                return text_answer(404, "unknown token")
            try:
                key_authorization = await solver.lookup(token)
            except AcmemsError as exc:  # the cluster database does not answer: 503, never "unknown"
                unavailable.inc()
                failed = http_answer(exc)
                return text_answer(failed.status, failed.line, failed.headers)
            if key_authorization is not None:
                answered.inc()
                return web.Response(text=key_authorization, content_type="text/plain")
            unknown.inc()
            return text_answer(404, "unknown token")
        if not path.startswith(prefix):
            return text_answer(404, "not found")
        return text_answer(405, f"method {request.method} not allowed; use GET", {"Allow": "GET, HEAD"})

    return answer
