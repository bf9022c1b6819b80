"""A cluster: what several acmems share lives in one PostgreSQL database (``[cluster]``,
docs/cluster.md). Every object handed out is one of :mod:`acmems.cluster`'s."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from acmems.backends.base import AccountCheck, Role, Schema
from acmems.challenges import ChallengeSolver
from acmems.challenges.http01 import TokenTable
from acmems.cluster import ClusterDb, DatabaseStore, SharedTokens, check_account, database_status, prepare, sweep
from acmems.cluster.acme_store import DatabaseAcmeStore
from acmems.cluster.backoff import SharedBackoff
from acmems.cluster.dns_journal import DatabaseJournal
from acmems.cluster.instances import leaving
from acmems.cluster.notify_store import DatabaseOutbox, DatabaseState
from acmems.cluster.quotas import DatabaseQuotas
from acmems.cluster.rate_log import DatabaseRateLog
from acmems.core.settings import ClusterSettings, DatabaseStorage, StorageSettings
from acmems.errors import AcmemsError
from acmems.metrics import Metrics
from acmems.notify.outbox import Outbox
from acmems.notify.state import NotifyState
from acmems.storage import CertificateStore, make_local_store
from acmems.storage.acme_store import AcmeStore
from acmems.storage.dns_journal import DnsJournal
from acmems.storage.pauses import CaPauses
from acmems.storage.quotas import BlockQuotas
from acmems.storage.rate_log import RateLog

__all__ = ["DNS_SWEEP_EVERY", "PostgresBackend"]

log = logging.getLogger("acmems.cluster")
DNS_SWEEP_EVERY = 5.0  # how often to look for DNS-01 values of instances that are gone
_ROWS_SWEEP_EVERY = 12  # of those rounds: dead instances' rows about once a minute


class PostgresBackend:
    """One connection pool for the life of the process (``[cluster]`` changes need a restart)."""

    def __init__(self, settings: ClusterSettings, role: Role) -> None:
        self.role = role
        if role is Role.WORKER:
            self.db = ClusterDb(settings, max_size=2)
        elif role is Role.COMMAND:
            self.db = ClusterDb(settings, log_loss=False)
        else:
            self.db = ClusterDb(settings)
        self.label = f" instance={settings.name}"
        self._journal = DatabaseJournal(self.db)
        self._tokens = SharedTokens(self.db)
        self._pauses = SharedBackoff(self.db)
        self._quotas = DatabaseQuotas(self.db)
        self._rate_log = DatabaseRateLog(self.db)

    async def open(self, schema: Schema = Schema.CREATE) -> None:
        if self.role is Role.COMMAND:
            await self.db.open(listen=False)
            if schema is not Schema.ANY:
                await prepare(self.db, upgrade=schema is Schema.CREATE, announce=False)
            return
        await self.db.open()
        if self.role is Role.SERVER:
            await prepare(self.db)
            log.info("cluster database %s: instance %s", self.db.where, self.db.name)

    async def close(self) -> None:
        await self.db.close(leaving(self.db) if self.role is Role.SERVER else None)

    async def status(self) -> str:
        return f"{self.db.where}: {await database_status(self.db)}"

    def store(self, settings: StorageSettings, *, track_requests: bool = False) -> CertificateStore:
        if isinstance(settings, DatabaseStorage):
            return DatabaseStore(settings, self.db, track_requests=track_requests)
        return make_local_store(settings, track_requests=track_requests)  # each instance its own

    def http01_tokens(self) -> TokenTable:
        return self._tokens

    def dns_journal(self, directory: Path) -> DnsJournal:
        # In the database: any instance removes what a crashed one left.
        return self._journal

    def rate_log(self, directory: Path) -> RateLog:
        return self._rate_log

    def ca_pauses(self) -> CaPauses:
        return self._pauses

    def block_quotas(self) -> BlockQuotas:
        return self._quotas

    def acme_store(self, directory: Path | None) -> AcmeStore:
        return DatabaseAcmeStore(self.db)

    def notify_outbox(self, directory: Path) -> Outbox:
        return DatabaseOutbox(self.db)

    def notify_state(self, directory: Path) -> NotifyState:
        return DatabaseState(self.db)

    def account_check(self, acme_server: str) -> AccountCheck:
        # Every instance must use the one account key (checked before registering).
        return functools.partial(check_account, self.db, acme_server)

    def problems(self) -> list[str]:
        return [] if self.db.available else [f"the cluster database {self.db.where} does not answer"]

    def watch(self, metrics: Metrics) -> None:
        db = self.db
        metrics.watch_cluster(lambda: db.available, lambda: db.transactions)

    async def maintain(self, solvers: Callable[[], Iterable[ChallengeSolver]]) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(DNS_SWEEP_EVERY)
            rounds += 1
            if rounds % _ROWS_SWEEP_EVERY == 1:  # what dead instances left in the database
                try:
                    await sweep(self.db)
                except AcmemsError as exc:
                    log.debug("cluster sweep: %s", exc.message)
            for solver in solvers():
                try:
                    await solver.recover()
                except AcmemsError as exc:  # the database: tried again at the next sweep
                    log.debug("DNS-01 sweep: %s", exc.message)
