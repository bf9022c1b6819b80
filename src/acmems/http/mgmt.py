"""The management listener: ``POST /sign`` (:class:`SignHandler`), ``GET /health``, ``GET /metrics``.

The path of a ``POST /sign``: the peer address from the socket, the checks that need no body
(Content-Length, ``max-size``, an auth block that could accept this address and header), the body
within ``body-timeout``, the CSR (parsed once per distinct body), the auth block (decided once per
configuration, client, header and body), then the signer (:class:`acmems.issuance.issuer.Issuer`: the cache,
or an order) and one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from aiohttp import web

from acmems.core.csr import CsrInfo, CsrMemo
from acmems.core.policy import choose_auth_block, peer_address, precheck
from acmems.core.settings import AuthSettings, Settings
from acmems.errors import AcmemsError, CsrError, Kind, RequestError, http_answer
from acmems.http.plumbing import Handler, Routes, answering_errors, socket_peer, text_answer
from acmems.issuance.issuer import SignResult
from acmems.lru import Lru
from acmems.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = ["Runtime", "SignHandler", "Signer", "admin_only", "health_page", "management_handler", "metrics_page"]

log = logging.getLogger("acmems.sign")
_AUTH_MEMO_SIZE = 1024
_AuthKey = tuple[str, str | None, bytes]  # peer, Authentication header, body


class Signer(Protocol):
    """Answers a checked CSR with a chain (:class:`acmems.issuance.issuer.Issuer`)."""

    async def sign(self, csr: CsrInfo, block: AuthSettings, timeout: float) -> SignResult: ...


class Runtime(Protocol):
    """What the management handler needs; swapped as a whole when the configuration is reloaded."""

    @property
    def settings(self) -> Settings: ...

    @property
    def issuer(self) -> Signer: ...


class SignHandler:
    """``POST /sign``.

    Args:
        current: the runtime of the configuration in force.
        metrics: where answers are counted.
        peer_of: the client's address for a request (the socket's peer; on the workers' internal
            socket, the address the worker saw).
        label: added to the log line of each request (which worker answered).
        on_answer: told of each certificate answered (block, CSR, client address, chain): who
            fetched which certificate, for the notifier.
    """

    def __init__(
        self,
        current: Callable[[], Runtime],
        metrics: Metrics,
        *,
        peer_of: Callable[[web.BaseRequest], str] = socket_peer,
        label: str = "",
        on_answer: Callable[[AuthSettings, CsrInfo, str, bytes], None] | None = None,
    ) -> None:
        self.current = current
        self.on_answer = on_answer
        self.metrics = metrics
        self.peer_of = peer_of
        self.label = label
        self.csr_memo = CsrMemo()
        # choose_auth_block is pure: its grants are remembered for the configuration they were made
        # under (refusals are not, so refused requests cannot fill the memory). A reload starts afresh.
        self.auth_memo: Lru[_AuthKey, AuthSettings] = Lru(_AUTH_MEMO_SIZE)
        self.auth_memo_settings: Settings | None = None
        self.answered_200 = metrics.requests.labels("200")  # looked up once: every cache hit counts here

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        runtime = self.current()
        settings = runtime.settings
        peer, block_name = "?", None
        names: tuple[str, ...] = ()
        try:
            peer = self.peer_of(request)
            self._check_before_body(request, settings, peer)
            body = await self._read_body(request, settings)
            csr = self.csr_memo.parse(body)
            names = csr.names
            if csr.addresses and not any(b.addresses for b in settings.auth_blocks):
                raise CsrError(
                    f"the request names an IP address ({', '.join(sorted(csr.addresses))}); only DNS names "
                    "can be certified here (no auth block allows addresses: 'address = NETWORK')"
                )
            block = self._auth_block(settings, peer, request.headers.get("Authentication"), body, csr)
            block_name = block.name
            self.metrics.block_requests.labels(block_name).inc()
            outcome = await self.obtain(request, body, csr, block, runtime)
        except Exception as exc:
            answer = http_answer(exc)
            self.metrics.requests.labels(str(answer.status)).inc()
            reason = exc.log_detail or exc.message if isinstance(exc, AcmemsError) else f"{type(exc).__name__}: {exc}"
            self._log(peer, answer.status, started, names, block_name, False, reason)
            raise
        if isinstance(outcome, web.StreamResponse):
            return outcome  # answered elsewhere (a worker's forwarded request), counted and logged there
        self.answered_200.inc()
        if self.on_answer is not None:
            self.on_answer(block, csr, peer, outcome.chain)
        self._log(peer, 200, started, names, block_name, outcome.cache_hit, "", outcome.ca)
        return web.Response(body=outcome.chain, content_type="text/plain")

    async def obtain(
        self, request: web.BaseRequest, body: bytes, csr: CsrInfo, block: AuthSettings, runtime: Runtime
    ) -> SignResult | web.StreamResponse:
        """The chain for an accepted request: here, the runtime's signer."""
        return await runtime.issuer.sign(csr, block, runtime.settings.mgmt.request_timeout)

    def _check_before_body(self, request: web.BaseRequest, settings: Settings, peer: str) -> None:
        max_size = settings.mgmt.max_size
        if request.content_length is None:
            raise RequestError("Content-Length is required (send the CSR as a plain body)", kind=Kind.LENGTH_REQUIRED)
        if request.content_length > max_size:
            raise RequestError(
                f"the CSR has {request.content_length} bytes; this server accepts at most {max_size} ([mgmt] max-size)",
                kind=Kind.TOO_LARGE,
            )
        precheck(settings.auth_blocks, peer_address(peer), "Authentication" in request.headers)

    async def _read_body(self, request: web.BaseRequest, settings: Settings) -> bytes:
        if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            # The checks before the body passed before the client uploads anything: now ask for it.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        if request.content.is_eof():
            return await request.read()  # all there already (a small CSR comes with the headers)
        try:
            async with asyncio.timeout(settings.mgmt.body_timeout):  # cheaper than wait_for: no extra task
                return await request.read()
        except TimeoutError:
            raise RequestError(
                f"the body did not arrive within {settings.mgmt.body_timeout:g} s ([mgmt] body-timeout)",
                kind=Kind.BODY_TIMEOUT,
            ) from None

    def _auth_block(self, settings: Settings, peer: str, header: str | None, body: bytes, csr: CsrInfo) -> AuthSettings:
        if self.auth_memo_settings is not settings:
            self.auth_memo.clear()
            self.auth_memo_settings = settings
        key = (peer, header, body)
        block = self.auth_memo.get(key)
        if block is None:
            block = choose_auth_block(settings.auth_blocks, peer_address(peer), header, body, csr.names, csr.addresses)
            self.auth_memo.put(key, block)
        return block

    def _log(
        self,
        peer: str,
        status: int,
        started: float,
        names: tuple[str, ...],
        block: str | None,
        cache_hit: bool,
        reason: str,
        ca: str | None = None,
    ) -> None:
        outcome = "issued" if status == 200 and not cache_hit else "cached" if status == 200 else "refused"
        log.info(
            "sign peer=%s block=%s names=%s outcome=%s status=%d duration=%.3f cache_hit=%s%s%s%s",
            peer,
            block or "-",
            ",".join(names) or "-",
            outcome,
            status,
            time.monotonic() - started,
            "yes" if cache_hit else "no",
            f" ca={ca}" if ca else "",
            self.label,
            f" reason={reason!r}" if reason else "",
        )


def health_page(health: Callable[[], list[str]]) -> Handler:
    """``GET /health``: 200 ``ok``, or 503 naming every problem."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        problems = health()
        if problems:
            return text_answer(503, "unhealthy: " + "; ".join(problems))
        return text_answer(200, "ok")

    return answer


def metrics_page(metrics: Metrics) -> Handler:
    """``GET /metrics``: the Prometheus text exposition."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return answer


def admin_only(page: Handler, current: Callable[[], Runtime], peer_of: Callable[[web.BaseRequest], str]) -> Handler:
    """``page`` for clients in ``[mgmt] admin-ip`` (the socket's peer); 403 for every other address."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        peer = peer_of(request)
        allowed = current().settings.mgmt.admin_ip
        if not any(peer_address(peer) in network for network in allowed):
            raise AcmemsError(
                f"{request.path} answers only the addresses in [mgmt] admin-ip, not {peer}",
                kind=Kind.NOT_AUTHORIZED,
            )
        return await page(request)

    return answer


def management_handler(
    sign: Handler,
    pages: Mapping[str, Handler],
    current: Callable[[], Runtime] | None = None,
    peer_of: Callable[[web.BaseRequest], str] = socket_peer,
) -> Handler:
    """The handler for ``[mgmt] listener``: ``POST /sign`` and the admin ``pages`` (``/health``,
    ``/metrics``, ``/status``: GET and HEAD; only for ``[mgmt] admin-ip`` when ``current`` is given),
    every error answered in one place."""
    table: dict[str, tuple[tuple[str, ...], Handler]] = {"/sign": (("POST",), sign)}
    for path, page in pages.items():
        table[path] = (("GET", "HEAD"), admin_only(page, current, peer_of) if current is not None else page)
    routes = Routes(table, "not found: this server answers POST /sign, GET /health, GET /metrics and GET /status")
    return answering_errors(routes)
