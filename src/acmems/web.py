"""The HTTP side: the management handler (``POST /sign``, ``/health``, ``/metrics``) and the HTTP-01
challenge handler, both on aiohttp's low-level server (no router, no middleware: a cache hit and a
challenge answer should cost next to nothing).

Errors are answered in one place (:func:`_answering_errors`): one text line, the status the error
carries, ``Retry-After`` where it applies. Malformed HTTP that aiohttp's parser rejects gets a
one-line answer too (:class:`OneLineErrorServer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from acmems.challenges.http01 import Http01Solver
from acmems.csr import CsrInfo, CsrMemo
from acmems.errors import AcmemsError, RequestError
from acmems.issuer import SignResult
from acmems.metrics import CONTENT_TYPE_LATEST, Metrics
from acmems.policy import choose_auth_block, peer_address, precheck
from acmems.settings import AuthSettings, Settings

__all__ = [
    "PEER_HEADER",
    "Forwarder",
    "NotCached",
    "OneLineErrorServer",
    "Runtime",
    "Signer",
    "challenge_handler",
    "management_handler",
]

log = logging.getLogger("acmems.sign")
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# Passes a request on to the main process (worker processes): the request and its body, if read.
Forwarder = Callable[[web.BaseRequest, bytes | None], Awaitable[web.StreamResponse]]
# The client's address as a worker saw it; believed only on the main process's internal socket.
PEER_HEADER = "X-Acmems-Peer"
_AUTH_MEMO_SIZE = 1024


def _text(
    status: int, message: str, retry_after: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, text=message + "\n", content_type="text/plain", headers=headers)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _answering_errors(handler: Handler) -> Handler:
    """The one place where errors become answers."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except AcmemsError as exc:
            response = _text(exc.status, exc.message, exc.retry_after)
            if not request.content.is_eof():
                # Answered before the body was read (403/411/413): do not wait for it, close.
                response.force_close()
            return response
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error while answering %s %s", request.method, request.path)
            return _text(500, "internal error; see the acmems log")

    return answer


class _OneLineErrors(RequestHandler):
    """aiohttp's handler, but requests its parser rejects get one line and a one-line log entry."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        text = getattr(exc, "message", None) or (str(exc) if exc is not None else message) or ""
        reason = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
        first = reason[0] if reason else "malformed request"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        log.info("bad HTTP request from %s: %d %s", peer[0] if peer else "?", status, first[:200])
        if status >= 500:
            return _text(status, "internal error; see the acmems log")
        return _text(status, f"bad request: {first[:200]}")


class OneLineErrorServer(web.Server):
    """aiohttp's low-level server with :class:`_OneLineErrors` connection handlers."""

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _OneLineErrors(self, loop=self._loop, **kwargs)


def _peer(request: web.BaseRequest) -> str:
    # The socket's peer, never X-Forwarded-For / X-Real-IP: a client could claim any address.
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if not peername:
        raise RequestError("cannot tell the client's address", status=400)
    return str(peername[0])


def _forwarded_peer(request: web.BaseRequest) -> str:
    # Only for the main process's internal socket, which only worker processes can reach.
    peer = request.headers.get(PEER_HEADER)
    if not peer:
        raise RequestError("cannot tell the client's address", status=400)
    return peer


class NotCached(Exception):
    """A worker process's answer when the cache cannot answer: the main process must."""


class Signer(Protocol):
    """Answers a checked CSR with a chain (:class:`acmems.issuer.Issuer`, or a worker's cache)."""

    async def sign(self, csr: CsrInfo, block: AuthSettings, timeout: float) -> SignResult: ...


class Runtime(Protocol):
    """What the management handler needs; swapped as a whole when the configuration is reloaded."""

    @property
    def settings(self) -> Settings: ...

    @property
    def issuer(self) -> Signer: ...


def management_handler(
    current: Callable[[], Runtime],
    metrics: Metrics,
    health: Callable[[], list[str]],
    *,
    forward: Forwarder | None = None,
    internal: bool = False,
    label: str = "",
) -> Handler:
    """The handler for ``[mgmt] listener``: ``POST /sign``, ``GET /health``, ``GET /metrics``.

    ``current`` gives the runtime of the configuration in force; ``health`` lists problems (empty: fine).
    In a worker process, ``forward`` passes what the cache cannot answer (and ``/health``, ``/metrics``)
    to the main process; ``internal`` is the main process's side of that: the client's address comes
    from :data:`PEER_HEADER`. ``label`` is added to the log line of each ``/sign``.
    """
    peer_of = _forwarded_peer if internal else _peer
    answered_200 = metrics.requests.labels("200")  # looked up once: every cache hit counts here
    csr_memo = CsrMemo()
    auth_memo: OrderedDict[tuple[str, str | None, bytes], AuthSettings] = OrderedDict()
    auth_memo_for: list[Settings | None] = [None]  # the configuration the memo belongs to (kept alive)

    def check_before_body(request: web.BaseRequest, settings: Settings, peer: str) -> None:
        max_size = settings.mgmt.max_size
        if request.content_length is None:
            raise RequestError("Content-Length is required (send the CSR as a plain body)", status=411)
        if request.content_length > max_size:
            raise RequestError(
                f"the CSR has {request.content_length} bytes; this server accepts at most {max_size} ([mgmt] max-size)",
                status=413,
            )
        precheck(settings.auth_blocks, peer_address(peer), "Authentication" in request.headers)

    async def sign(request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        names: tuple[str, ...] = ()
        block_name: str | None = None
        runtime = current()
        settings, issuer = runtime.settings, runtime.issuer
        peer = "?"
        try:
            peer = peer_of(request)
            check_before_body(request, settings, peer)
            if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
                # The checks above passed before the client uploads anything: now ask for the body.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            try:
                if request.content.is_eof():
                    body = await request.read()  # all there already (a small CSR comes with the headers)
                else:
                    async with asyncio.timeout(settings.mgmt.body_timeout):  # cheaper than wait_for: no extra task
                        body = await request.read()
            except TimeoutError:
                raise RequestError(
                    f"the body did not arrive within {settings.mgmt.body_timeout:g} s ([mgmt] body-timeout)", status=408
                ) from None
            csr = csr_memo.parse(body)
            names = csr.names
            header = request.headers.get("Authentication")
            # choose_auth_block is pure: remember its answers for this configuration, client and body
            # (only granted ones, so refused requests cannot fill the memory). A reload starts afresh.
            if auth_memo_for[0] is not settings:
                auth_memo.clear()
                auth_memo_for[0] = settings
            memo_key = (peer, header, body)
            block = auth_memo.get(memo_key)
            if block is None:
                block = choose_auth_block(settings.auth_blocks, peer_address(peer), header, body, names)
                auth_memo[memo_key] = block
                if len(auth_memo) > _AUTH_MEMO_SIZE:
                    auth_memo.popitem(last=False)
            block_name = block.name
            try:
                result = await issuer.sign(csr, block, settings.mgmt.request_timeout)
            except NotCached:
                assert forward is not None
                # The main process answers, counts and logs it.
                return await forward(request, body)
        except AcmemsError as exc:
            metrics.requests.labels(str(exc.status)).inc()
            _log_sign(
                peer,
                exc.status,
                time.monotonic() - started,
                names,
                block_name,
                False,
                exc.log_detail or exc.message,
                label,
            )
            raise
        answered_200.inc()
        _log_sign(peer, 200, time.monotonic() - started, names, block_name, result.cache_hit, "", label)
        return web.Response(body=result.chain, content_type="text/plain")

    async def health_check(request: web.BaseRequest) -> web.StreamResponse:
        if forward is not None:
            return await forward(request, None)
        problems = health()
        if problems:
            return _text(503, "unhealthy: " + "; ".join(problems))
        return _text(200, "ok")

    async def metrics_page(request: web.BaseRequest) -> web.StreamResponse:
        if forward is not None:
            return await forward(request, None)
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    routes: dict[str, tuple[tuple[str, ...], Handler]] = {
        "/sign": (("POST",), sign),
        "/health": (("GET", "HEAD"), health_check),
        "/metrics": (("GET", "HEAD"), metrics_page),
    }

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        route = routes.get(request.path)
        if route is None:
            raise RequestError("not found: this server answers POST /sign, GET /health and GET /metrics", status=404)
        methods, handler = route
        if request.method not in methods:
            allowed = ", ".join(methods)
            return _text(405, f"method {request.method} not allowed; use {allowed}", headers={"Allow": allowed})
        return await handler(request)

    return _answering_errors(dispatch)


def _log_sign(
    peer: str,
    status: int,
    duration: float,
    names: tuple[str, ...],
    block: str | None,
    cache_hit: bool,
    reason: str,
    label: str,
) -> None:
    outcome = "issued" if status == 200 and not cache_hit else "cached" if status == 200 else "refused"
    log.info(
        "sign peer=%s block=%s names=%s outcome=%s status=%d duration=%.3f cache_hit=%s%s%s",
        peer,
        block or "-",
        ",".join(names) or "-",
        outcome,
        status,
        duration,
        "yes" if cache_hit else "no",
        label,
        f" reason={reason!r}" if reason else "",
    )


def challenge_handler(solver: Http01Solver) -> Handler:
    """The handler for an http01 verification's listeners: ``GET /.well-known/acme-challenge/<token>``.

    Any Host header; 404 for unknown tokens so a proxy can try the next acmems.
    """
    prefix = "/.well-known/acme-challenge/"

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method in ("GET", "HEAD") and path.startswith(prefix):
            key_authorization = solver.key_authorization(path[len(prefix) :])
            if key_authorization is not None:
                return web.Response(text=key_authorization, content_type="text/plain")
            return web.Response(status=404, text="unknown token\n", content_type="text/plain")
        if not path.startswith(prefix):
            return web.Response(status=404, text="not found\n", content_type="text/plain")
        return web.Response(
            status=405,
            text=f"method {request.method} not allowed; use GET\n",
            content_type="text/plain",
            headers={"Allow": "GET, HEAD"},
        )

    return answer
