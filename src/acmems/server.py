"""Run acmems: open every listener of the configuration on one event loop until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from acmems.acme_ca import AcmeCa
from acmems.challenges import ChallengeSolver, DnsUpdateSolver, Http01Solver, PendingJournal, make_solver
from acmems.config import Http01Verification, Listener, Settings
from acmems.errors import AcmemsError
from acmems.issuer import Issuer
from acmems.storage import CertificateCache, make_cache
from acmems.web import challenge_app, management_app

__all__ = ["Server", "run"]

log = logging.getLogger(__name__)
_SHUTDOWN_GRACE = 30.0
DNS_JOURNAL = "dns01-pending.json"
_BACKLOG = 1024


class Server:
    """All of acmems' runtime objects for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ca = AcmeCa(settings.account)
        self.journal = PendingJournal(self.ca.files.directory / DNS_JOURNAL)
        self.solvers: dict[str, ChallengeSolver] = {
            name: make_solver(v, self.journal)
            for name, v in settings.verifications.items()
            if name in settings.used_verifications
        }
        self.caches: dict[str, CertificateCache] = {name: make_cache(s) for name, s in settings.storages.items()}
        self.issuer = Issuer(self.ca, self.solvers, self.caches)
        self._runners: list[web.AppRunner] = []
        self.bound: list[str] = []

    async def start(self) -> None:
        """Check the account, then open every listener; raises on a port that cannot be bound."""
        await self.ca.start()
        for solver in self.solvers.values():
            if isinstance(solver, DnsUpdateSolver):
                if solver.key is None:
                    log.warning(
                        "verification %r sends DNS updates without TSIG: anyone who can reach %s:%d "
                        "could change the zone the same way; set tsig-key-file",
                        solver.name,
                        solver.settings.dns_server,
                        solver.settings.dns_port,
                    )
                await solver.recover()
        await self._serve(management_app(self.settings, self.issuer), self.settings.mgmt.listeners, "mgmt")
        for name, solver in self.solvers.items():
            verification = self.settings.verifications[name]
            if isinstance(verification, Http01Verification):
                assert isinstance(solver, Http01Solver)
                await self._serve(challenge_app(solver), verification.listeners, f"http01 {name!r}")

    async def _serve(self, app: web.Application, listeners: tuple[Listener, ...], what: str) -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        for listener in listeners:
            site = web.TCPSite(runner, listener.host, listener.port, backlog=_BACKLOG, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise AcmemsError(f"cannot listen on {listener} for {what}: {exc.strerror}") from None
            self.bound.append(f"{what} {listener}")

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (bounded), close everything.

        The management listeners go first; the challenge listeners stay open meanwhile, since the
        requests still running need them for their HTTP-01 validations.
        """
        for runner in self._runners:
            await runner.cleanup()
        self.ca.close()


async def _main(settings: Settings) -> int:
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except AcmemsError as exc:
        log.error("%s", exc.message)
        await server.stop()
        return 1
    log.info("acmems ready: %s", ", ".join(server.bound))
    await stop.wait()
    log.info("stopping: no new connections; letting running requests finish")
    await server.stop()
    log.info("stopped")
    return 0


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    return asyncio.run(_main(settings))
