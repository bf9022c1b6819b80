"""The sockets acmems listens on: each on aiohttp's low-level server, opened in order and closed in
the reverse order (so the management listeners, opened last, close first)."""

from __future__ import annotations

import socket
import ssl

from aiohttp import web

from acmems.core.settings import Listener
from acmems.errors import AcmemsError
from acmems.http.plumbing import Handler, OneLineErrorServer

__all__ = ["SHUTDOWN_GRACE", "Listeners"]

SHUTDOWN_GRACE = 30.0  # running requests may finish within this at a stop
_BACKLOG = 4096


class Listeners:
    """The runners opened so far and, for logs and ``/health``, what each listens on."""

    def __init__(self) -> None:
        self._runners: list[web.BaseRunner] = []
        self.bound: list[str] = []

    async def serve(
        self,
        handler: Handler,
        listeners: tuple[Listener, ...],
        what: str,
        idle_timeout: float,
        sockets: list[socket.socket] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Answer ``handler`` on ``listeners`` (or on ``sockets`` bound already, shared with the
        worker processes); with ``tls``, HTTPS. Raises :class:`AcmemsError` naming a port that is in use."""
        # aiohttp closes a connection that has not completed a request within keepalive_timeout of
        # connecting: the defence against clients that trickle their headers (slowloris).
        server = OneLineErrorServer(handler, access_log=None, keepalive_timeout=idle_timeout)
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        if sockets is not None:
            # Bound already (shared with worker processes); listening starts here.
            for sock in sockets:
                await web.SockSite(runner, sock, backlog=_BACKLOG).start()
            self.bound += [f"{what} {listener}" for listener in listeners]
            return
        for listener in listeners:
            site = web.TCPSite(
                runner, listener.host, listener.port, backlog=_BACKLOG, reuse_address=True, ssl_context=tls
            )
            try:
                await site.start()
            except OSError as exc:
                raise AcmemsError(f"cannot listen on {listener} for {what}: {exc.strerror}") from None
            self.bound.append(f"{what} {listener}")

    async def close(self) -> None:
        """Stop accepting and let running requests finish (``SHUTDOWN_GRACE``), last opened first."""
        for runner in reversed(self._runners):
            await runner.cleanup()
