"""Worker processes: more processes answering the management listeners (``[mgmt] workers = N``).

One Python process answers about 8,000 cache hits a second on one core. With ``workers = N`` (N > 1)
the main process binds, for each management listener, N sockets sharing the address
(``SO_REUSEPORT``: the kernel spreads new connections over them), serves one itself and starts N-1
worker processes (``python -m acmems.workers``), each with its own socket and the main process's
configuration (sent over a pipe, so they never read a file the main process did not).

A worker answers what its file cache can (``POST /sign`` of a certificate not due for renewal) and
what it refuses (403, 411, 413, 415, ...) itself. Everything else (new certificates, renewals,
``/health``, ``/metrics``) it passes to the main process over a Unix socket in a private directory
(0700), with the client's address; the main process checks such a request again from the start. The
main process alone talks to the CA, answers HTTP-01, updates DNS, renews and writes the cache.
Workers report their counters (and which certificates were asked for, for proactive renewal) every
second. The main process restarts a worker that dies, replaces them all after a reload and stops
them when it stops; a worker whose main process is gone stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from acmems.csr import CsrInfo
from acmems.errors import AcmemsError, RequestError
from acmems.issuer import SignResult
from acmems.metrics import Metrics
from acmems.settings import AuthSettings, Listener, Settings
from acmems.storage import CertificateCache, make_cache
from acmems.storage.file import FileCache
from acmems.web import PEER_HEADER, Forwarder, Handler, NotCached, OneLineErrorServer, Runtime, management_handler

__all__ = ["WorkerPool", "bind_shared", "main"]

log = logging.getLogger("acmems.workers")  # also when run as __main__
_REPORT_EVERY = 1.0
_STATS_PATH = "/worker-stats"
_READY_WITHIN = 20.0
_REPORT_TIMEOUT = 5.0
_RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
_STOP_GRACE = 35.0
# Kept-alive connections to the main process: the client gives them up before the server does.
_CLIENT_KEEPALIVE = 10.0
_SERVER_KEEPALIVE = 60.0
_COPIED_HEADERS = ("Content-Type", "Retry-After", "Allow")


def bind_shared(listeners: Sequence[Listener], count: int) -> list[list[socket.socket]]:
    """Bind ``count`` sockets per address of every listener, sharing it (SO_REUSEPORT), not listening yet.

    One list per process. A socket joins the kernel's distribution when its process calls listen(),
    that is when it is ready to accept.

    Raises:
        AcmemsError: naming the listener that cannot be bound (nothing stays bound then).
    """
    groups: list[list[socket.socket]] = [[] for _ in range(count)]
    try:
        for listener in listeners:
            try:
                infos = socket.getaddrinfo(
                    listener.host or None, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
                addresses = {(info[0], info[4]): info for info in infos}  # each address once
                for family, kind, proto, _, address in addresses.values():
                    for group in groups:
                        sock = socket.socket(family, kind, proto)
                        group.append(sock)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                        if family == socket.AF_INET6:
                            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        sock.setblocking(False)
                        sock.bind(address)
            except OSError as exc:
                raise AcmemsError(f"cannot listen on {listener} for mgmt: {exc.strerror}") from None
    except AcmemsError:
        for group in groups:
            for sock in group:
                sock.close()
        raise
    return groups


class MainRuntime(Runtime, Protocol):
    """The main process's runtime as the pool sees it."""

    @property
    def caches(self) -> Mapping[str, CertificateCache]: ...


@dataclass
class _Slot:
    number: int
    sockets: list[socket.socket]
    process: asyncio.subprocess.Process | None = None
    replacing: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    """The main process's side: the internal socket, starting, restarting and stopping workers."""

    def __init__(
        self,
        current: Callable[[], MainRuntime],
        metrics: Metrics,
        health: Callable[[], list[str]],
    ) -> None:
        self._current = current
        self._metrics = metrics
        self._handler = management_handler(current, metrics, health, internal=True)
        self._directory = Path(tempfile.mkdtemp(prefix="acmems-"))  # 0700: only this user reaches the socket
        self.socket_path = self._directory / "main.sock"
        self._runner: web.BaseRunner | None = None
        self._slots: list[_Slot] = []
        self._supervisors: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self, sockets: Sequence[list[socket.socket]]) -> None:
        """Open the internal socket, then start one worker per list of listening sockets."""
        server = OneLineErrorServer(self._internal, access_log=None, keepalive_timeout=_SERVER_KEEPALIVE)
        self._runner = web.ServerRunner(server, shutdown_timeout=_STOP_GRACE, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket_path)).start()
        os.chmod(self.socket_path, 0o600)
        for number, group in enumerate(sockets, start=2):
            slot = _Slot(number, group)
            self._slots.append(slot)
            task = asyncio.create_task(self._supervise(slot))
            self._supervisors.add(task)
            task.add_done_callback(self._supervisors.discard)
        await self._wait_ready()

    async def _internal(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == _STATS_PATH:
            try:
                self._apply(json.loads(await request.read()))
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("a worker sent unreadable counters: %s", exc)
                return web.Response(status=400, text="unreadable counters\n")
            return web.Response(status=204)
        return await self._handler(request)

    def _apply(self, stats: dict[str, object]) -> None:
        ready = stats.get("ready")
        for slot in self._slots:
            if slot.number == ready:
                slot.ready.set()
        requests = stats.get("requests", {})
        assert isinstance(requests, dict)
        for status, count in requests.items():
            self._metrics.requests.labels(str(int(status))).inc(float(count))
        hits = float(stats.get("cache_hits", 0))  # type: ignore[arg-type]
        if hits:
            self._metrics.cache_hits.inc(hits)
        requested = stats.get("requested", {})
        assert isinstance(requested, dict)
        caches = self._current().caches
        now = time.time()
        for storage, digests in requested.items():
            cache = caches.get(storage)
            if isinstance(cache, FileCache):
                for digest in digests:
                    cache.note_requested(str(digest), now)

    async def _supervise(self, slot: _Slot) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            slot.ready.clear()
            try:
                slot.process = await self._spawn(slot)
            except OSError as exc:
                log.error("cannot start worker %d: %s", slot.number, exc)
                returncode: int | None = None
            else:
                returncode = await slot.process.wait()
            if self._stopping:
                return
            if slot.replacing:
                slot.replacing = False
                failures = 0
                continue
            self._metrics.worker_restarts.inc()
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = _RESTART_DELAYS[min(failures, len(_RESTART_DELAYS) - 1)]
            log.error(
                "worker %d stopped unexpectedly (exit %s); starting it again in %g s", slot.number, returncode, delay
            )
            await asyncio.sleep(delay)

    async def _spawn(self, slot: _Slot) -> asyncio.subprocess.Process:
        fds = [sock.fileno() for sock in slot.sockets]
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # only the main process talks to systemd
        command = [
            sys.executable,
            "-m",
            "acmems.workers",
            "--socket",
            str(self.socket_path),
            "--number",
            str(slot.number),
            "--parent",
            str(os.getpid()),
        ]
        for fd in fds:
            command += ["--fd", str(fd)]
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE, pass_fds=fds, env=env)
        assert process.stdin is not None
        # The configuration in force, not the files (they may have changed on disk since).
        process.stdin.write(pickle.dumps(self._current().settings))
        await process.stdin.drain()
        process.stdin.close()
        return process

    async def replace(self) -> None:
        """After a reload: stop every worker gently and start it again with the new configuration;
        returns when the new ones accept connections (or after a bounded wait)."""
        for slot in self._slots:
            slot.ready.clear()
        old = []
        for slot, process in self._running():
            slot.replacing = True
            process.send_signal(signal.SIGTERM)
            old.append(asyncio.ensure_future(process.wait()))
        if old:
            await asyncio.wait(old, timeout=_READY_WITHIN)
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        waiting = [asyncio.ensure_future(slot.ready.wait()) for slot in self._slots]
        _done, pending = await asyncio.wait(waiting, timeout=_READY_WITHIN)
        for waiter in pending:
            waiter.cancel()
        if pending:
            log.warning(
                "%d worker(s) not ready after %g s; serving without them meanwhile", len(pending), _READY_WITHIN
            )

    def problems(self) -> list[str]:
        """Workers not running (for ``/health``)."""
        return [
            f"worker {slot.number} is not ready"
            for slot in self._slots
            if not slot.replacing
            and (slot.process is None or slot.process.returncode is not None or not slot.ready.is_set())
        ]

    def _running(self) -> list[tuple[_Slot, asyncio.subprocess.Process]]:
        return [(s, s.process) for s in self._slots if s.process is not None and s.process.returncode is None]

    async def stop(self) -> None:
        """Stop every worker (they finish running requests), then close the internal socket."""
        self._stopping = True
        running = self._running()
        for _slot, process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            waits = [asyncio.ensure_future(p.wait()) for _s, p in running]
            _done, pending = await asyncio.wait(waits, timeout=_STOP_GRACE)
            for slot, process in running:
                if process.returncode is None:
                    log.warning("worker %d (pid %d) did not stop in time; killing it", slot.number, process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for task in list(self._supervisors):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        for slot in self._slots:
            for sock in slot.sockets:
                sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)


# --- the worker process -------------------------------------------------------------------------


class _CacheOnly:
    """A worker's signer: the file cache, or the main process."""

    def __init__(self, caches: Mapping[str, CertificateCache], metrics: Metrics) -> None:
        self.caches = caches
        self.metrics = metrics

    async def sign(self, csr: CsrInfo, block: AuthSettings, timeout: float) -> SignResult:
        cache = self.caches[block.storage]
        chain = cache.get(csr.pem, block.profile)
        if chain is None:
            if isinstance(cache, FileCache):
                cache.forget(csr.pem, block.profile)  # the main process may renew it: read it afresh next time
            raise NotCached
        self.metrics.cache_hits.inc()
        return SignResult(chain, cache_hit=True)


@dataclass(frozen=True, slots=True)
class _WorkerRuntime:
    settings: Settings
    issuer: _CacheOnly


def _forwarder(session: aiohttp.ClientSession, timeout: float) -> Forwarder:
    async def forward(request: web.BaseRequest, body: bytes | None) -> web.StreamResponse:
        peername = request.transport.get_extra_info("peername") if request.transport is not None else None
        headers = {PEER_HEADER: str(peername[0]) if peername else ""}
        for name in ("Authentication", "Content-Type"):
            value = request.headers.get(name)
            if value is not None:
                headers[name] = value
        try:
            async with session.request(
                request.method,
                "http://acmems" + request.path_qs,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                payload = await response.read()
                status = response.status
                copied = {k: v for k in _COPIED_HEADERS if (v := response.headers.get(k)) is not None}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.error("cannot reach the main acmems process: %s", exc or type(exc).__name__)
            raise RequestError(
                "acmems is restarting or overloaded; try again shortly", status=503, retry_after=5
            ) from None
        return web.Response(status=status, body=payload, headers=copied)

    return forward


def _totals(metrics: Metrics) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "acmems_sign_requests_total":
                totals[f"requests:{sample.labels['status']}"] = sample.value
            elif sample.name == "acmems_cache_hits_total":
                totals["cache_hits"] = sample.value
    return totals


async def _report(
    session: aiohttp.ClientSession,
    metrics: Metrics,
    caches: Mapping[str, CertificateCache],
    sent: dict[str, float],
    ready: int | None = None,
) -> None:
    """Send the counters' growth since the last report, and the certificates asked for (``ready``: the
    worker's number, once, when it accepts connections)."""
    totals = _totals(metrics)
    growth = {k: v - sent.get(k, 0.0) for k, v in totals.items() if v != sent.get(k, 0.0)}
    requested = {
        name: sorted(cache.requested)
        for name, cache in caches.items()
        if isinstance(cache, FileCache) and cache.requested
    }
    if not growth and not requested and ready is None:
        return
    stats = {
        "ready": ready,
        "requests": {k.split(":", 1)[1]: v for k, v in growth.items() if k.startswith("requests:")},
        "cache_hits": growth.get("cache_hits", 0.0),
        "requested": requested,
    }
    try:
        async with session.post(
            "http://acmems" + _STATS_PATH, data=json.dumps(stats), timeout=aiohttp.ClientTimeout(total=_REPORT_TIMEOUT)
        ) as response:
            await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.debug("cannot report counters to the main process: %s", exc)
        return
    sent.update(totals)
    for cache in caches.values():
        if isinstance(cache, FileCache) and cache.requested:
            cache.requested.clear()


async def _serve(settings: Settings, socket_path: str, number: int, fds: Sequence[int], parent: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the main process reloads, then replaces workers
    caches = {name: make_cache(s) for name, s in settings.storages.items()}
    for cache in caches.values():
        if isinstance(cache, FileCache):
            cache.requested = set()
    metrics = Metrics()
    runtime = _WorkerRuntime(settings, _CacheOnly(caches, metrics))
    connector = aiohttp.UnixConnector(path=socket_path, limit=0, keepalive_timeout=_CLIENT_KEEPALIVE)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    forward = _forwarder(session, settings.mgmt.request_timeout + 30)
    handler: Handler = management_handler(
        lambda: runtime,
        metrics,
        list,
        forward=forward,
        label=f" worker={number}",
    )
    server = OneLineErrorServer(handler, access_log=None, keepalive_timeout=settings.mgmt.idle_timeout)
    runner = web.ServerRunner(server, shutdown_timeout=_STOP_GRACE - 5, handle_signals=False)
    await runner.setup()
    for fd in fds:
        await web.SockSite(runner, socket.socket(fileno=fd), backlog=4096).start()
    log.info("worker %d serving (pid %d)", number, os.getpid())
    sent: dict[str, float] = {}
    watcher = asyncio.create_task(_watch_parent(parent, number, stop))
    await _report(session, metrics, caches, sent, ready=number)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _REPORT_EVERY)
        await _report(session, metrics, caches, sent)
    watcher.cancel()
    try:
        async with asyncio.timeout(_STOP_GRACE):
            await runner.cleanup()
            await _report(session, metrics, caches, sent)
            await session.close()
    except TimeoutError:
        log.warning("worker %d: running requests did not finish in %g s; stopping anyway", number, _STOP_GRACE)
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
