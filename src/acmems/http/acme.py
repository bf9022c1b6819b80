"""The HTTPS listener of ``[acme-server]``: HTTP in, :class:`acmems.acme_server.front.AcmeFront`
resources out. Every answer carries a fresh ``Replay-Nonce`` and the ``Link`` to the directory;
every error is an RFC 7807 problem document (``application/problem+json``), never a bare 500. URLs
are built from the request's ``Host``, so the client's own name for this server appears in them."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from aiohttp import web

from acmems.acme_server.front import AcmeFront, route
from acmems.acme_server.problems import AcmeProblem, from_error
from acmems.acme_server.views import Reply, Urls
from acmems.core.settings import Settings
from acmems.errors import AcmemsError
from acmems.http.plumbing import Handler, socket_peer
from acmems.metrics import Metrics

__all__ = ["acme_handler"]

log = logging.getLogger("acmems.acme_server")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?")
_JOSE = "application/jose+json"


def _problem_reply(problem: AcmeProblem) -> Reply:
    headers = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    if problem.location is not None:
        headers["Location"] = problem.location
    return Reply(problem.http_status, problem.to_json().encode(), "application/problem+json", headers)


class _AcmeAnswers:
    """The handler; ``resource`` of each request is counted in ``acmems_acme_requests_total``."""

    def __init__(self, front: AcmeFront, settings: Callable[[], Settings], metrics: Metrics) -> None:
        self.front = front
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        found = route(request.path)
        resource = found[0] if found is not None else "-"
        host = request.headers.get("Host", "")
        urls = Urls(f"https://{host}") if _HOST.fullmatch(host) else None
        try:
            if urls is None:
                raise AcmeProblem("malformed", "the request has no usable Host header")
            if found is None:
                raise AcmeProblem("notFound", f"no resource at {request.path}; the directory is /directory")
            reply = await self._answer(request, resource, found[1], urls)
        except AcmeProblem as problem:
            reply = _problem_reply(problem)
        except AcmemsError as exc:
            reply = _problem_reply(from_error(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error while answering %s %s", request.method, request.path)
            reply = _problem_reply(AcmeProblem("serverInternal", "internal error; see the acmems log"))
        response = web.Response(status=reply.status, body=reply.payload(), headers=reply.headers)
        response.content_type = reply.content_type
        if urls is not None:
            response.headers["Link"] = ", ".join(
                filter(None, [reply.headers.get("Link"), f'<{urls.directory}>;rel="index"'])
            )
        if request.method != "GET" or resource == "new-nonce":
            try:
                response.headers["Replay-Nonce"] = await self.front.nonce()
            except AcmemsError as exc:  # the database: the client gets one with its next request
                log.warning("no nonce for the answer: %s", exc.message)
        self.metrics.acme_requests.labels(resource, str(reply.status)).inc()
        log.debug("acme %s %s -> %d (%.3f s)", request.method, request.path, reply.status, time.monotonic() - started)
        return response

    async def _answer(self, request: web.BaseRequest, resource: str, ident: str, urls: Urls) -> Reply:
        method = request.method
        if resource == "directory":
            self._only(method, ("GET", "HEAD"))
            return Reply(200, self.front.directory(urls))
        if resource == "new-nonce":
            self._only(method, ("GET", "HEAD"))
            return Reply(204 if method == "GET" else 200, b"", "text/plain", {"Cache-Control": "no-store"})
        if resource == "renewal-info":
            self._only(method, ("GET",))
            return await self.front.renewal_info(ident)
        self._only(method, ("POST",))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != _JOSE:
            raise AcmeProblem("unsupportedMediaType", f"Content-Type must be {_JOSE}, not {content_type or 'none'!r}")
        body = await self._body(request)
        return await self.front.post(resource, ident, urls, urls.base + request.path, body, socket_peer(request))

    @staticmethod
    def _only(method: str, allowed: tuple[str, ...]) -> None:
        if method not in allowed:
            raise AcmeProblem("malformed", f"this resource answers {', '.join(allowed)}", status=405)

    async def _body(self, request: web.BaseRequest) -> bytes:
        mgmt = self.settings().mgmt
        if request.content_length is None:
            raise AcmeProblem("malformed", "Content-Length is required", status=411)
        if request.content_length > mgmt.max_size:
            raise AcmeProblem(
                "malformed",
                f"the request has {request.content_length} bytes; this server accepts at most {mgmt.max_size} "
                "([mgmt] max-size)",
                status=413,
            )
        try:
            async with asyncio.timeout(mgmt.body_timeout):
                return await request.read()
        except TimeoutError:
            raise AcmeProblem(
                "malformed", "the body did not arrive in time ([mgmt] body-timeout)", status=408
            ) from None


def acme_handler(front: AcmeFront, settings: Callable[[], Settings], metrics: Metrics) -> Handler:
    """The handler of the ``[acme-server]`` listeners."""
    return _AcmeAnswers(front, settings, metrics)
