"""Worker processes, the main process's side (``[mgmt] workers = N``): the shared listening
sockets, the internal socket, starting, restarting, replacing and stopping the workers.

With ``workers = N`` (N > 1) the main process binds, for each management listener, N sockets sharing
the address (``SO_REUSEPORT``: the kernel spreads new connections over them), serves one itself and
starts N-1 worker processes (:mod:`acmems.workers.process`), each with its own socket and the main
process's configuration (sent over a pipe, so they never read a file the main process did not).
The main process alone talks to the CA, answers HTTP-01, updates DNS, renews and writes the cache;
what a worker cannot answer comes here over a Unix socket in a private directory (0700) and is
checked again from the start (:mod:`acmems.workers.messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
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

from aiohttp import web

from acmems.core.backoff import capped_backoff
from acmems.core.csr import CsrInfo
from acmems.core.settings import AuthSettings, Listener
from acmems.errors import AcmemsError
from acmems.http.mgmt import Runtime, SignHandler, health_page, management_handler, metrics_page
from acmems.http.plumbing import Handler, OneLineErrorServer
from acmems.metrics import Metrics
from acmems.storage import CertificateStore
from acmems.workers.messages import REPORT_PATH, WorkerReport, forwarded_peer

__all__ = ["WorkerPool", "bind_shared"]

log = logging.getLogger("acmems.workers")
_READY_WITHIN = 20.0
_RESTART_FIRST, _RESTART_MAX = 0.5, 10.0  # a worker that keeps failing is restarted less often
STOP_GRACE = 35.0
_SERVER_KEEPALIVE = 60.0  # kept-alive connections from workers: they give them up first


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
    def caches(self) -> Mapping[str, CertificateStore]: ...


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
        label: str = "",
        pages: Mapping[str, Handler] | None = None,
        on_answer: Callable[[AuthSettings, CsrInfo, str, bytes], None] | None = None,
        on_fetched: Callable[[str, str, str, int, float], None] | None = None,
    ) -> None:
        self._current = current
        self._on_fetched = on_fetched  # a worker's answers: who got which certificate (the notifier)
        self._metrics = metrics
        sign = SignHandler(current, metrics, peer_of=forwarded_peer, label=label, on_answer=on_answer)
        # The workers pass the admin pages on with the client's address: checked here against admin-ip.
        admin = {"/health": health_page(health), "/metrics": metrics_page(metrics), **(pages or {})}
        self._handler = management_handler(sign, admin, current, forwarded_peer)
        self._directory = Path(tempfile.mkdtemp(prefix="acmems-"))  # 0700: only this user reaches the socket
        self.socket_path = self._directory / "main.sock"
        self._runner: web.BaseRunner | None = None
        self._slots: list[_Slot] = []
        self._supervisors: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self, sockets: Sequence[list[socket.socket]]) -> None:
        """Open the internal socket, then start one worker per list of listening sockets."""
        server = OneLineErrorServer(self._internal, access_log=None, keepalive_timeout=_SERVER_KEEPALIVE)
        self._runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE, handle_signals=False)
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
        if request.path == REPORT_PATH:
            try:
                report = WorkerReport.from_json(await request.read())
            except ValueError as exc:
                log.warning("a worker sent an unreadable report: %s", exc)
                return web.Response(status=400, text="unreadable report\n")
            self._apply(report)
            return web.Response(status=204)
        return await self._handler(request)

    def _apply(self, report: WorkerReport) -> None:
        if report.ready:
            for slot in self._slots:
                if slot.number == report.worker:
                    slot.ready.set()
        for status, count in report.requests.items():
            self._metrics.requests.labels(str(status)).inc(count)
        if report.cache_hits:
            self._metrics.cache_hits.inc(report.cache_hits)
        caches = self._current().caches
        now = time.time()
        for storage, digests in report.requested.items():
            cache = caches.get(storage)
            if cache is not None:
                for digest in digests:
                    cache.note_requested(digest, now)
        if self._on_fetched is not None:
            for storage, digest, client, serial, when in report.fetched:
                self._on_fetched(storage, digest, client, int(serial, 16), when)

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
            delay = capped_backoff(failures + 1, _RESTART_FIRST, _RESTART_MAX)
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
            "acmems.workers.process",
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
            _done, pending = await asyncio.wait(waits, timeout=STOP_GRACE)
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
