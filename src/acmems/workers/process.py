"""A worker process (``python -m acmems.workers.process``, started by :mod:`acmems.workers.pool` only).

It answers on its share of the management listeners what its store can (``POST /sign`` of a
certificate not due for renewal) and what it refuses (403, 411, 413, 415, ...); everything else
(new certificates, renewals, ``/health``, ``/metrics``) it forwards to the main process with the
client's address. Every second it reports its counters and the certificates asked for
(:class:`acmems.workers.messages.WorkerReport`); it stops when its main process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from cryptography import x509

from acmems.backends import Role, make_backend
from acmems.core.csr import CsrInfo
from acmems.core.settings import AuthSettings, Settings
from acmems.errors import AcmemsError, Kind, RequestError
from acmems.http.mgmt import Runtime, SignHandler, management_handler
from acmems.http.plumbing import OneLineErrorServer
from acmems.issuance.issuer import SignResult
from acmems.lru import Lru
from acmems.metrics import Metrics
from acmems.storage import CertificateStore, csr_digest, find_cached, forget_cached
from acmems.workers.messages import MAX_FETCHED, PEER_HEADER, REPORT_PATH, WorkerReport
from acmems.workers.pool import STOP_GRACE

__all__ = ["main"]

log = logging.getLogger("acmems.workers")
_REPORT_EVERY = 1.0
_REPORT_TIMEOUT = 5.0
_CLIENT_KEEPALIVE = 10.0  # below the main process's: the client gives a kept-alive connection up first
_COPIED_HEADERS = ("Content-Type", "Retry-After", "Allow")


class _Forwarder:
    """Passes a request on to the main process over the internal socket, with the client's address."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    async def __call__(self, request: web.BaseRequest, body: bytes | None = None) -> web.StreamResponse:
        peername = request.transport.get_extra_info("peername") if request.transport is not None else None
        headers = {PEER_HEADER: str(peername[0]) if peername else ""}
        for name in ("Authentication", "Content-Type"):
            value = request.headers.get(name)
            if value is not None:
                headers[name] = value
        try:
            async with self.session.request(
                request.method,
                "http://acmems" + request.path_qs,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                payload = await response.read()
                copied = {k: v for k in _COPIED_HEADERS if (v := response.headers.get(k)) is not None}
                return web.Response(status=response.status, body=payload, headers=copied)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.error("cannot reach the main acmems process: %s", exc or type(exc).__name__)
            raise RequestError("acmems is restarting or overloaded; try again shortly", kind=Kind.UNAVAILABLE) from None


class _NotCached(Exception):
    """The worker's store cannot answer this request: the main process must."""


class _CacheSigner:
    """A worker's signer: the chains its stores hold and that are not due for renewal."""

    def __init__(self, caches: Mapping[str, CertificateStore], metrics: Metrics) -> None:
        self.caches = caches
        self.metrics = metrics

    async def sign(self, csr: CsrInfo, block: AuthSettings, timeout: float) -> SignResult:
        cache = self.caches[block.storage]
        chain = await find_cached(cache, csr, block.profile)
        if chain is None:
            forget_cached(cache, csr, block.profile)  # the main process may renew it: read it afresh next time
            raise _NotCached
        self.metrics.cache_hits.inc()
        return SignResult(chain, cache_hit=True)


@dataclass(frozen=True, slots=True)
class _WorkerRuntime:
    settings: Settings
    issuer: _CacheSigner


class _WorkerSignHandler(SignHandler):
    """``POST /sign`` in a worker: the store's chain, or the main process's answer."""

    def __init__(
        self, runtime: _WorkerRuntime, metrics: Metrics, forward: _Forwarder, number: int, instance: str
    ) -> None:
        self.fetched: dict[tuple[str, str, str], tuple[str, float]] = {}  # reported to the main process
        self._serials: Lru[bytes, str] = Lru(1024)
        super().__init__(lambda: runtime, metrics, label=f"{instance} worker={number}", on_answer=self._note)
        self.forward = forward

    def _note(self, block: AuthSettings, csr: CsrInfo, peer: str, chain: bytes) -> None:
        # Who got which certificate: the main process's notifier keeps the pickups.
        serial = self._serials.get(chain)
        if serial is None:
            serial = format(x509.load_pem_x509_certificate(chain).serial_number, "x")
            self._serials.put(chain, serial)
        if len(self.fetched) < MAX_FETCHED:
            self.fetched[(block.storage, csr_digest(csr.pem, block.profile), peer)] = (serial, time.time())

    async def obtain(
        self, request: web.BaseRequest, body: bytes, csr: CsrInfo, block: AuthSettings, runtime: Runtime
    ) -> SignResult | web.StreamResponse:
        try:
            return await super().obtain(request, body, csr, block, runtime)
        except _NotCached:
            return await self.forward(request, body)  # the main process answers, counts and logs it


class _Reporter:
    """Sends the growth of the counters since the last report, and the certificates asked for."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        caches: Mapping[str, CertificateStore],
        fetched: dict[tuple[str, str, str], tuple[str, float]],
    ) -> None:
        self.session = session
        self.metrics = metrics
        self.caches = caches
        self.fetched = fetched  # the sign handler's: who got which certificate since the last report
        self.sent: dict[str, float] = {}
        self.pending: dict[str, set[str]] = {}  # digests not yet reported, by storage

    def _totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "acmems_sign_requests_total":
                    totals[sample.labels["status"]] = sample.value
                elif sample.name == "acmems_cache_hits_total":
                    totals["cache_hits"] = sample.value
        return totals

    async def report(self, number: int, *, ready: bool = False) -> None:
        for name, cache in self.caches.items():
            taken = cache.take_requested()
            if taken:
                self.pending.setdefault(name, set()).update(taken)
        totals = self._totals()
        growth = {k: v - self.sent.get(k, 0.0) for k, v in totals.items() if v != self.sent.get(k, 0.0)}
        report = WorkerReport(
            number,
            ready,
            {int(k): v for k, v in growth.items() if k.isdigit()},
            growth.get("cache_hits", 0.0),
            {k: tuple(sorted(v)) for k, v in self.pending.items()},
            tuple((st, digest, client, serial, when) for (st, digest, client), (serial, when) in self.fetched.items()),
        )
        if report.empty:
            return
        try:
            async with self.session.post(
                "http://acmems" + REPORT_PATH,
                data=report.to_json(),
                timeout=aiohttp.ClientTimeout(total=_REPORT_TIMEOUT),
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("cannot report counters to the main process: %s", exc)
            return
        self.sent.update(totals)
        self.pending.clear()
        for st, digest, client, _, when in report.fetched:
            if self.fetched.get((st, digest, client), ("", 0.0))[1] <= when:
                self.fetched.pop((st, digest, client), None)


async def _serve(settings: Settings, socket_path: str, number: int, fds: Sequence[int], parent: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the main process reloads, then replaces workers
    # The same stores as the main process (a cluster's database storages too): cache hits, notifications.
    backend = make_backend(settings, Role.WORKER)
    await backend.open()
    caches = {name: backend.store(s, track_requests=True) for name, s in settings.storages.items()}
    metrics = Metrics()
    connector = aiohttp.UnixConnector(path=socket_path, limit=0, keepalive_timeout=_CLIENT_KEEPALIVE)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    forward = _Forwarder(session, settings.mgmt.request_timeout + 30)
    runtime = _WorkerRuntime(settings, _CacheSigner(caches, metrics))
    sign = _WorkerSignHandler(runtime, metrics, forward, number, backend.label)
    handler = management_handler(sign, {"/health": forward, "/metrics": forward, "/status": forward})
    server = OneLineErrorServer(handler, access_log=None, keepalive_timeout=settings.mgmt.idle_timeout)
    runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE - 5, handle_signals=False)
    await runner.setup()
    for fd in fds:
        await web.SockSite(runner, socket.socket(fileno=fd), backlog=4096).start()
    log.info("worker %d serving (pid %d)", number, os.getpid())
    reporter = _Reporter(session, metrics, caches, sign.fetched)
    watcher = asyncio.create_task(_watch_parent(parent, number, stop))
    await reporter.report(number, ready=True)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _REPORT_EVERY)
        await reporter.report(number)
    watcher.cancel()
    try:
        async with asyncio.timeout(STOP_GRACE):
            await runner.cleanup()
            await reporter.report(number)
            await session.close()
            await backend.close()
    except TimeoutError:
        log.warning("worker %d: running requests did not finish in %g s; stopping anyway", number, STOP_GRACE)
    return 0


async def _watch_parent(parent: int, number: int, stop: asyncio.Event) -> None:
    # Workers must not outlive the main process (killed, or crashed): it alone can issue.
    while os.getppid() == parent:
        await asyncio.sleep(_REPORT_EVERY / 2)
    log.error("worker %d: the main acmems process is gone; stopping", number)
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (started by the main process only)."""
    parser = argparse.ArgumentParser(prog="acmems-worker", description="internal: started by acmems")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--fd", type=int, action="append", default=[])
    parser.add_argument("--parent", type=int, required=True)  # known before start: it may die meanwhile
    args = parser.parse_args(argv)
    settings = pickle.load(sys.stdin.buffer)  # noqa: S301  # from the main process, over a pipe
    if not isinstance(settings, Settings):
        raise SystemExit("acmems worker: expected the configuration on standard input")
    from acmems.logsetup import setup_logging

    setup_logging(settings.logging)
    try:
        return asyncio.run(_serve(settings, args.socket, args.number, args.fd, args.parent))
    except AcmemsError as exc:
        log.error("worker %d: %s", args.number, exc.message)
        return 1


if __name__ == "__main__":
    sys.exit(main())
