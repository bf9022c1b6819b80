"""Gates: small loopback servers that hold one step of an issuance until the test lets it go, so a
test can prove that work is in flight at the moment it kills or stops something (instead of
sleeping and hoping).

- :class:`HttpGate` stands where the CA sends its HTTP-01 checks: while closed it holds each check
  until :meth:`HttpGate.release`, then forwards it to the real challenge listener.
- :class:`DnsGate` is a ``check-server``: for the names it holds it serves no TXT value until
  released (so acmems keeps waiting with its value published at the primary), and forwards every
  other query to the real server.
- :class:`SlowLink` is a slow network in front of a TCP server (the cluster's database).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import dns.message
import dns.query
import dns.rcode

__all__ = ["DnsGate", "HttpGate", "SlowLink"]

_HOLD_AT_MOST = 120.0  # a gate never holds longer, whatever the test does


class _Gate:
    """What both gates share: what was held so far (one count per distinct challenge: the CA may
    check one from several places, acmems asks again and again), what may pass, and the release."""

    def __init__(self, *, closed: bool = True) -> None:
        self._open = not closed
        self._held: set[str] = set()
        self._allowed: set[str] = set()
        self._changed = threading.Condition()

    def passes(self, what: str) -> bool:
        """Whether a request for ``what`` goes through now."""
        with self._changed:
            return self._open or what in self._allowed

    def _note_held(self, what: str) -> None:
        with self._changed:
            self._held.add(what)
            self._changed.notify_all()

    def _hold(self, what: str) -> None:
        """Note ``what`` as held, then wait until it passes (the condition's lock is re-entrant)."""
        with self._changed:
            self._note_held(what)
            self._changed.wait_for(lambda: self.passes(what), _HOLD_AT_MOST)

    @property
    def held(self) -> list[str]:
        """The distinct challenges that reached the gate while it was closed, in no order."""
        with self._changed:
            return sorted(self._held)

    def wait_held(self, count: int, timeout: float) -> bool:
        """Until ``count`` distinct challenges have reached the closed gate (False after ``timeout``)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._held) >= count, timeout)

    def close(self) -> None:
        """Hold what comes from now on."""
        with self._changed:
            self._open = False

    def allow(self, what: str) -> None:
        """Let the requests for ``what`` through (held ones and later ones); the gate stays closed."""
        with self._changed:
            self._allowed.add(what)
            self._changed.notify_all()

    def release(self) -> None:
        """Let every held request, and all later ones, through."""
        with self._changed:
            self._open = True
            self._changed.notify_all()


class HttpGate(_Gate):
    """On ``port``: holds every request until released, then answers what ``backend_port`` answers."""

    def __init__(self, port: int, backend_port: int, *, closed: bool = True) -> None:
        super().__init__(closed=closed)
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not gate.passes(self.path):
                    gate._hold(self.path)
                url = f"http://127.0.0.1:{backend_port}{self.path}"
                try:
                    with urllib.request.urlopen(url, timeout=10) as answer:
                        status, body = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                except OSError:
                    status, body = 502, b"the challenge listener does not answer\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpGate:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


class DnsGate(_Gate):
    """A UDP DNS server on ``port``: a query for a name ``hold(name)`` picks is answered with no
    records until released; everything else is forwarded to ``upstream_port``."""

    def __init__(self, port: int, upstream_port: int, hold: Callable[[str], bool]) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.hold = hold
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", port))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            name = query.question[0].name.to_text().rstrip(".").lower() if query.question else ""
            if self.hold(name) and not self.passes(name):
                self._note_held(name)
                answer = dns.message.make_response(query)
                answer.set_rcode(dns.rcode.NOERROR)
            else:
                try:
                    answer = dns.query.udp(query, "127.0.0.1", port=self.upstream_port, timeout=2)
                except (dns.exception.Timeout, OSError):
                    continue
            self._socket.sendto(answer.to_wire(), peer)

    def __enter__(self) -> DnsGate:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


class SlowLink:
    """A TCP proxy on ``port`` to ``upstream_port`` that delivers every chunk ``delay`` seconds after
    it arrived, both ways (a database across a slow network, or a busy one): operations take longer,
    so anything that queues behind them shows. Order and throughput are kept: a chunk waits for its
    own due time only."""

    def __init__(self, port: int, upstream_port: int, delay: float) -> None:
        self.port, self.upstream_port, self.delay = port, upstream_port, delay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - self._loop.time()))  # not sync: the simulated latency
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((self._loop.time() + self.delay, chunk))
        except OSError:
            pass
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(OSError):
            await sender

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                each.transport.abort()  # closed at once, also when cancelled: nothing left to the GC

    def __enter__(self) -> SlowLink:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", self.port), self._loop
        )
        self._server = started.result(5)
        return self

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
