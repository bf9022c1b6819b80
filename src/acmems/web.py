"""The HTTP side: the management app (``POST /sign``) and the HTTP-01 challenge app.

Errors are answered in one place (:func:`_errors` middleware): one text line, the status the
error carries, ``Retry-After`` where it applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from acmems.challenges.http01 import Http01Solver
from acmems.config import Settings
from acmems.csr import CsrMemo
from acmems.errors import AcmemsError, RequestError
from acmems.issuer import Issuer
from acmems.metrics import CONTENT_TYPE_LATEST, Metrics
from acmems.policy import choose_auth_block, peer_address, precheck

__all__ = ["Runtime", "challenge_handler", "management_app"]

log = logging.getLogger("acmems.sign")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REASONS = {
    404: "not found",
    405: "method not allowed",
    413: "request too large",
}


def _text(status: int, message: str, retry_after: int | None = None) -> web.Response:
    response = web.Response(status=status, text=message + "\n", content_type="text/plain")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AcmemsError as exc:
        return _text(exc.status, exc.message, exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _REASONS.get(exc.status, exc.reason)
        if exc.status == 405:
            message = f"method {request.method} not allowed; use POST"
        response = _text(exc.status, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error while answering %s %s", request.method, request.path)
        return _text(500, "internal error; see the acmems log")


def _peer(request: web.Request) -> str:
    # The socket's peer, never X-Forwarded-For / X-Real-IP: a client could claim any address.
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if not peername:
        raise RequestError("cannot tell the client's address", status=400)
    return str(peername[0])


class Runtime(Protocol):
    """What the management app needs; swapped as a whole when the configuration is reloaded."""

    settings: Settings
    issuer: Issuer


def management_app(current: Callable[[], Runtime], metrics: Metrics,
                   health: Callable[[], list[str]]) -> web.Application:
    """The app for ``[mgmt] listener``: ``POST /sign``, ``GET /health``, ``GET /metrics``.

    ``current`` gives the runtime of the configuration in force; ``health`` lists problems (empty: fine).
    """

    csr_memo = CsrMemo()

    def check_before_body(request: web.Request) -> None:
        settings = current().settings
        max_size = settings.mgmt.max_size
        blocks = settings.auth_blocks
        if request.content_length is None:
            raise RequestError("Content-Length is required (send the CSR as a plain body)", status=411)
        if request.content_length > max_size:
            raise RequestError(
                f"the CSR has {request.content_length} bytes; this server accepts at most {max_size} ([mgmt] max-size)",
                status=413,
            )
        precheck(blocks, peer_address(_peer(request)), "Authentication" in request.headers)

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        # Answer 411/413/403 before the client uploads anything (Expect: 100-continue).
        try:
            check_before_body(request)
        except AcmemsError as exc:
            metrics.requests.labels(str(exc.status)).inc()
            _log_sign(
                request, exc.status, 0.0, names=(), block=None, cache_hit=False, reason=exc.log_detail or exc.message
            )
            return _text(exc.status, exc.message, exc.retry_after)
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            assert request.writer is not None
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def sign(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        names: tuple[str, ...] = ()
        block_name: str | None = None
        runtime = current()
        settings, issuer = runtime.settings, runtime.issuer
        try:
            check_before_body(request)
            try:
                async with asyncio.timeout(settings.mgmt.body_timeout):  # cheaper than wait_for: no extra task
                    body = await request.read()
            except TimeoutError:
                raise RequestError(
                    f"the body did not arrive within {settings.mgmt.body_timeout:g} s ([mgmt] body-timeout)", status=408
                ) from None
            csr = csr_memo.parse(body)
            names = csr.names
            block = choose_auth_block(
                settings.auth_blocks, peer_address(_peer(request)), request.headers.get("Authentication"), body, names
            )
            block_name = block.name
            result = await issuer.sign(csr, block, settings.mgmt.request_timeout)
        except AcmemsError as exc:
            metrics.requests.labels(str(exc.status)).inc()
            _log_sign(
                request, exc.status, time.monotonic() - started, names, block_name, False, exc.log_detail or exc.message
            )
            raise
        metrics.requests.labels("200").inc()
        _log_sign(request, 200, time.monotonic() - started, names, block_name, result.cache_hit, "")
        return web.Response(body=result.chain, content_type="text/plain")

    async def health_check(request: web.Request) -> web.StreamResponse:
        problems = health()
        if problems:
            return _text(503, "unhealthy: " + "; ".join(problems))
        return _text(200, "ok")

    async def metrics_page(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def not_found(request: web.Request) -> web.StreamResponse:
        raise RequestError("not found: this server answers POST /sign, GET /health and GET /metrics", status=404)

    async def wrong_method(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])

    # aiohttp's own limit is a backstop; 413 is answered from Content-Length before reading.
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024 * 1024)
    app.router.add_route("POST", "/sign", sign, expect_handler=expect_handler)
    app.router.add_route("GET", "/health", health_check)
    app.router.add_route("GET", "/metrics", metrics_page)
    app.router.add_route("*", "/sign", wrong_method)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def _log_sign(
    request: web.Request,
    status: int,
    duration: float,
    names: tuple[str, ...],
    block: str | None,
    cache_hit: bool,
    reason: str,
) -> None:
    try:
        peer = _peer(request)
    except RequestError:
        peer = "?"
    outcome = "issued" if status == 200 and not cache_hit else "cached" if status == 200 else "refused"
    log.info(
        "sign peer=%s block=%s names=%s outcome=%s status=%d duration=%.3f cache_hit=%s%s",
        peer,
        block or "-",
        ",".join(names) or "-",
        outcome,
        status,
        duration,
        "yes" if cache_hit else "no",
        f" reason={reason!r}" if reason else "",
    )


def challenge_handler(solver: Http01Solver) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The handler for an http01 verification's listeners: ``GET /.well-known/acme-challenge/<token>``.

    Any Host header; 404 for unknown tokens so a proxy can try the next acmems. It runs on aiohttp's
    low-level server (no router, no middleware): this path is hit three times per validation by the
    CA and by every probe on port 80, and should cost next to nothing.
    """
    prefix = "/.well-known/acme-challenge/"

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method in ("GET", "HEAD") and path.startswith(prefix):
            key_authorization = solver.key_authorization(path[len(prefix):])
            if key_authorization is not None:
                return web.Response(text=key_authorization, content_type="text/plain")
            return web.Response(status=404, text="unknown token\n", content_type="text/plain")
        if not path.startswith(prefix):
            return web.Response(status=404, text="not found\n", content_type="text/plain")
        return web.Response(status=405, text=f"method {request.method} not allowed; use GET\n",
                            content_type="text/plain", headers={"Allow": "GET, HEAD"})

    return answer
