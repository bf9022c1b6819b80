"""Run acmems: open every listener of the configuration on one event loop until SIGTERM/SIGINT.

SIGHUP re-reads the configuration files: a valid new configuration replaces auth blocks,
verifications, storages and the account; a broken one is refused and the old one keeps serving.
Listeners are opened at start only (changing them needs a restart).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from acmems.acme_server.front import AcmeFront
from acmems.acme_server.listener_cert import OwnCertificate, tls_context
from acmems.backends import Backend, make_backend
from acmems.ca.session import AcmeCa
from acmems.challenges import ChallengeSolver, Http01Solver, make_solver
from acmems.config import load_settings
from acmems.core.settings import DEFAULT_ACCOUNT, Http01Verification, Settings
from acmems.errors import AcmemsError
from acmems.http.acme import acme_handler
from acmems.http.listeners import Listeners
from acmems.http.mgmt import SignHandler, health_page, management_handler, metrics_page
from acmems.http.plumbing import challenge_handler
from acmems.http.status_page import status_handler
from acmems.issuance.issuer import Issuer
from acmems.issuance.notify_feed import NotifyService
from acmems.issuance.renewer import Renewer
from acmems.metrics import Metrics
from acmems.notify.collector import NotifyCollector
from acmems.sdnotify import notify
from acmems.storage import CertificateIndex, CertificateStore
from acmems.storage.pauses import MemoryPauses
from acmems.storage.rate_log import RateLog
from acmems.workers.pool import WorkerPool, bind_shared

__all__ = ["Runtime", "Server", "run"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """Everything built from one configuration."""

    settings: Settings
    ca: AcmeCa  # the default account's
    solvers: dict[str, ChallengeSolver]
    caches: dict[str, CertificateStore]
    issuer: Issuer
    cas: dict[str, AcmeCa]  # every account some auth block orders from, by name (default included)


class Server:
    """All of acmems' runtime objects; the configuration in force is ``self.runtime``."""

    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics()
        # Files, or the cluster database: chosen once (``[cluster]`` changes need a restart).
        self.backend: Backend = make_backend(settings)
        self._http01: dict[str, Http01Solver] = {}
        self._pauses = MemoryPauses()  # the CA's pauses this process knows of: kept across reloads
        # Events (webhook, mail, command), the watch for overdue certificates, and /status.
        directory = settings.account.dir or Path(".")
        self.notify = NotifyService(
            settings, self.backend.notify_outbox(directory), self.backend.notify_state(directory), lambda: self.runtime
        )
        self.status_page = status_handler(self.notify.rows)
        self.runtime = self._build(settings, None)
        collector = NotifyCollector(self.notify.notifier, self.notify.stores, self.notify.count)
        self.metrics.registry.register(collector)
        self.metrics.add_text(collector.certificate_series)
        self.metrics.watch_cache(self._cached_count, self._soonest_expiry)
        self.backend.watch(self.metrics)
        self.listeners = Listeners()
        self._background: set[asyncio.Task[None]] = set()
        self.renewer = Renewer(lambda: self.runtime)
        self.workers: WorkerPool | None = None
        # [acme-server]: acmems as an ACME server, over the same issuer (listeners at start only)
        self.acme_front: AcmeFront | None = None
        self.own_certificate: OwnCertificate | None = None
        acme = settings.acme_server
        if acme is not None:
            self.acme_front = AcmeFront(
                self.backend.acme_store(acme.dir), lambda: self.runtime, acme.http01_port, self.notify.on_answer
            )
            if acme.names:
                self.own_certificate = OwnCertificate(acme)

    async def _serve_acme(self, idle: float) -> None:
        acme = self.runtime.settings.acme_server
        if acme is None or self.acme_front is None:
            return
        if self.own_certificate is not None:
            tls = await self.own_certificate.obtain(self.runtime)
        else:
            assert acme.certificate is not None and acme.key is not None
            tls = tls_context(acme.certificate, acme.key)
        handler = acme_handler(self.acme_front, lambda: self.runtime.settings, self.metrics)
        await self.listeners.serve(handler, acme.listeners, "acme", idle, tls=tls)

    def _build(self, settings: Settings, previous: Runtime | None) -> Runtime:
        cas: dict[str, AcmeCa] = {}
        for name in settings.used_accounts:
            account = settings.account_named(name)
            kept = previous.cas.get(name) if previous is not None else None
            cas[name] = kept if kept is not None and kept.settings == account else AcmeCa(account)
        ca = cas[DEFAULT_ACCOUNT]
        journal = self.backend.dns_journal(ca.files.directory)
        solvers: dict[str, ChallengeSolver] = {}
        for name, verification in settings.verifications.items():
            if name not in settings.used_verifications:
                continue
            if isinstance(verification, Http01Verification):
                # The challenge listeners serve these objects: keep them across reloads.
                if name not in self._http01:
                    self._http01[name] = Http01Solver(name, self.backend.http01_tokens())
                solvers[name] = self._http01[name]
            else:
                solvers[name] = make_solver(verification, journal)
        caches = {name: self.backend.store(s) for name, s in settings.storages.items()}
        issuer = Issuer(
            ca,
            solvers,
            caches,
            metrics=self.metrics,
            rate_log=self._rate_log(ca, cas),
            pauses=self._pauses,
            backoff=self.backend.ca_pauses(),
            quotas=self.backend.block_quotas(),
            cas=cas,
            request_timeout=settings.mgmt.request_timeout,
            notifier=self.notify.notifier,
        )
        return Runtime(settings, ca, solvers, caches, issuer, cas)

    def _rate_log(self, ca: AcmeCa, cas: dict[str, AcmeCa]) -> RateLog | None:
        # One log for every account (its events are keyed by acme-server), in the default account's
        # directory (kept across reloads) or the cluster's database; needed if any account has limits.
        if all(other.settings.rate_limits is None for other in cas.values()):
            return None
        return self.backend.rate_log(ca.files.directory)

    async def _load_index(self, cache: CertificateIndex) -> None:
        started = time.monotonic()
        try:
            count = await cache.load_index()
        except OSError as exc:
            log.error("storage %s: cannot read %s: %s", cache.name, cache.where, exc)
            return
        except AcmemsError as exc:  # the cluster database: what is asked for is read as it comes
            log.error("storage %s: cannot read the index from %s: %s", cache.name, cache.where, exc.message)
            return
        if not cache.keeps_certificates:
            return  # a store that keeps nothing has nothing to report
        log.info(
            "storage %s: %d certificate(s) cached in %s (indexed in %.2f s)",
            cache.name,
            count,
            cache.where,
            time.monotonic() - started,
        )

    async def _prepare(self, runtime: Runtime, *, at_start: bool = False) -> None:
        for cache in runtime.caches.values():
            if at_start:
                # Serving starts at once: until the index is read, a request reads the store itself.
                task = asyncio.create_task(self._load_index(cache))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                await self._load_index(cache)
        for solver in runtime.solvers.values():
            for warning in solver.warnings():
                log.warning("%s", warning)
            if at_start:
                # Only at start: later, the journal also lists the values of orders still running.
                await solver.recover()

    async def start(self) -> None:
        """Check the account, read the caches, then open every listener; raises on a port in use."""
        runtime = self.runtime
        await self.backend.open()
        for ca in runtime.cas.values():
            await ca.start(self.backend.account_check(ca.settings.acme_server))
        self._check_profiles(runtime)
        await self._prepare(runtime, at_start=True)
        mgmt = runtime.settings.mgmt
        idle = mgmt.idle_timeout
        await self.notify.notifier.start(self.notify.watched)
        sign = SignHandler(lambda: self.runtime, self.metrics, label=self.log_label, on_answer=self.notify.on_answer)
        pages = {
            "/health": health_page(self.health),
            "/metrics": metrics_page(self.metrics),
            "/status": self.status_page,
        }
        handler = management_handler(sign, pages, lambda: self.runtime)
        shared = bind_shared(mgmt.listeners, mgmt.workers) if mgmt.workers > 1 else None
        # The challenge listeners first: a request accepted on a management listener may need them.
        for name, solver in self._http01.items():
            verification = runtime.settings.verifications[name]
            assert isinstance(verification, Http01Verification)
            await self.listeners.serve(
                challenge_handler(solver, self.metrics), verification.listeners, f"http01 {name!r}", idle
            )
        await self._serve_acme(idle)  # its own certificate (name =) may need the challenge listeners
        if shared is None:
            await self.listeners.serve(handler, mgmt.listeners, "mgmt", idle)
            return
        self.workers = WorkerPool(
            lambda: self.runtime,
            self.metrics,
            self.health,
            self.log_label,
            {"/status": self.status_page},
            self.notify.on_answer,
            self.notify.notifier.fetched_serial,
        )
        await self.workers.start(shared[1:])
        await self.listeners.serve(handler, mgmt.listeners, "mgmt", idle, shared[0])

    @property
    def log_label(self) -> str:
        """Added to each /sign log line: in a cluster, which instance answered."""
        return self.backend.label

    def _check_profiles(self, runtime: Runtime) -> None:
        # A profile the CA does not list is a configuration error (known once the directory is read).
        # (of each block's first CA: a fallback CA without the profile orders its default, logged)
        for name, ca in runtime.cas.items():
            ca.check_profiles(
                {b.profile for b in runtime.settings.auth_blocks if b.profile is not None and b.ca[0] == name}
            )

    def start_renewer(self) -> None:
        """Run proactive renewal in the background (unless ``renewal-interval = 0``) and the
        backend's upkeep (a cluster: removing what instances that are gone left behind)."""
        tasks = [asyncio.create_task(self.backend.maintain(lambda: self.runtime.solvers.values()))]
        if self.runtime.settings.mgmt.renewal_interval > 0:
            tasks.append(asyncio.create_task(self.renewer.run()))
        if self.own_certificate is not None:
            tasks.append(asyncio.create_task(self.own_certificate.keep_renewed(lambda: self.runtime)))
        for task in tasks:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def reload(self, paths: Sequence[str]) -> bool:
        """Re-read the configuration; swap it in if valid. Whether it was swapped."""
        try:
            settings = await asyncio.to_thread(load_settings, paths)
        except AcmemsError as exc:
            log.error("reload refused, the old configuration keeps serving: %s", exc.message)
            return False
        old = self.runtime.settings
        if settings.cluster != old.cluster:
            log.error("reload refused: [cluster] changed; restart acmems to change the cluster database")
            return False
        if settings.mgmt.workers != old.mgmt.workers:
            log.error("reload refused: [mgmt] workers changed; restart acmems to change the number of processes")
            return False
        if settings.acme_server != old.acme_server:
            log.error("reload refused: [acme-server] changed; restart acmems to change the ACME server")
            return False
        if settings.mgmt.listeners != old.mgmt.listeners or any(
            isinstance(v, Http01Verification)
            and name in settings.used_verifications
            and (name not in self._http01 or v != old.verifications.get(name))
            for name, v in settings.verifications.items()
        ):
            log.error("reload refused: listeners changed; restart acmems to open new listeners")
            return False
        for warning in settings.warnings:
            log.warning("config: %s", warning)
        try:
            runtime = self._build(settings, self.runtime)
            for ca in runtime.cas.values():
                if ca not in self.runtime.cas.values():
                    await ca.start(self.backend.account_check(ca.settings.acme_server))
            self._check_profiles(runtime)
            await self._prepare(runtime)
        except AcmemsError as exc:
            log.error("reload refused, the old configuration keeps serving: %s", exc.message)
            return False
        self.runtime = runtime
        await self.notify.notifier.configure(settings.notify)
        if self.workers is not None:
            await self.workers.replace()
        log.info("configuration reloaded from %s", ", ".join(settings.files))
        return True

    def health(self) -> list[str]:
        """Problems that make this acmems unhealthy (empty: healthy)."""
        problems = []
        if not self.listeners.bound:
            problems.append("no listener is open")
        if self.workers is not None:
            problems += self.workers.problems()
        problems += self.backend.problems()
        for cache in self.runtime.caches.values():
            problems += cache.problems()
        return problems

    def _cached_count(self) -> float:
        return float(sum(c.count() for c in self.runtime.caches.values()))

    def _soonest_expiry(self) -> float:
        soonest = [e for c in self.runtime.caches.values() if (e := c.soonest_expiry()) is not None]
        if not soonest:
            return float("nan")
        return (min(soonest) - datetime.now(UTC)).total_seconds()

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (bounded), close everything.

        The management listeners go first; the challenge listeners stay open meanwhile, since the
        requests still running need them for their HTTP-01 validations.
        """
        for task in list(self._background):
            task.cancel()
        if self.workers is not None:
            # First: their running requests may still need this process (and its challenge listeners).
            await self.workers.stop()
        await self.listeners.close()  # management listeners first (opened last)
        for ca in self.runtime.cas.values():
            ca.close()
        await self.notify.notifier.stop()  # what is not delivered stays in the outbox
        await self.backend.close()


def _raise_open_files_limit() -> None:
    # Many idle clients must not starve the others of sockets: use the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _main(settings: Settings) -> int:
    _raise_open_files_limit()
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        task = loop.create_task(server.reload(settings.files))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await server.start()
    except AcmemsError as exc:
        log.error("%s%s", exc.message, f" ({exc.log_detail})" if exc.log_detail else "")
        await server.stop()
        return 1
    log.info("acmems ready: %s", ", ".join(server.listeners.bound))
    server.start_renewer()
    notify("READY=1\nSTATUS=serving")
    await stop.wait()
    notify("STOPPING=1")
    log.info("stopping: no new connections; letting running requests finish")
    await server.stop()
    log.info("stopped")
    return 0


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    return asyncio.run(_main(settings))
