"""One acmems with nothing but files: what is shared is this process's memory and the account
directory's files (``dns01-pending.json``, ``rate-events.json``, ``notify-outbox/``,
``notify-state.json``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from acmems.backends.base import AccountCheck, Schema
from acmems.challenges import ChallengeSolver
from acmems.challenges.http01 import NoSharedTokens, TokenTable
from acmems.core.settings import DatabaseStorage, StorageSettings
from acmems.errors import ConfigError
from acmems.metrics import Metrics
from acmems.notify.outbox import FileOutbox, Outbox
from acmems.notify.state import STATE_FILE, FileState, NotifyState
from acmems.storage import CertificateStore, make_local_store
from acmems.storage.acme_files import FileAcmeStore
from acmems.storage.acme_store import AcmeStore
from acmems.storage.dns_journal import DnsJournal, PendingJournal
from acmems.storage.pauses import CaPauses, NoSharedPauses
from acmems.storage.quotas import BlockQuotas, MemoryQuotas
from acmems.storage.rate_log import FileRateLog, RateLog

__all__ = ["DNS_JOURNAL", "OUTBOX", "RATE_LOG", "FileBackend"]

DNS_JOURNAL = "dns01-pending.json"  # in the account directory: DNS-01 values not yet removed
RATE_LOG = "rate-events.json"  # in the account directory: what the rate limits count
OUTBOX = "notify-outbox"  # in the default account's directory: events not yet delivered


class FileBackend:
    """Files in the account directories; one object per file, so that orders of the old and the new
    configuration (after a reload) share it."""

    label = ""

    def __init__(self) -> None:
        self._journals: dict[Path, PendingJournal] = {}
        self._rate_logs: dict[Path, FileRateLog] = {}
        self._tokens = NoSharedTokens()
        self._pauses = NoSharedPauses()
        self._quotas = MemoryQuotas()

    async def open(self, schema: Schema = Schema.CREATE) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release: every file is written whole when it changes."""

    async def status(self) -> str | None:
        """No shared database."""
        return None

    def store(self, settings: StorageSettings, *, track_requests: bool = False) -> CertificateStore:
        if isinstance(settings, DatabaseStorage):  # refused by the configuration already
            raise ConfigError(f'[storage "{settings.name}"] type = database needs a [cluster] section')
        return make_local_store(settings, track_requests=track_requests)

    def http01_tokens(self) -> TokenTable:
        return self._tokens

    def dns_journal(self, directory: Path) -> DnsJournal:
        path = directory / DNS_JOURNAL
        if path not in self._journals:
            self._journals[path] = PendingJournal(path)
        return self._journals[path]

    def rate_log(self, directory: Path) -> RateLog:
        path = directory / RATE_LOG
        if path not in self._rate_logs:
            self._rate_logs[path] = FileRateLog(path)
        return self._rate_logs[path]

    def ca_pauses(self) -> CaPauses:
        return self._pauses

    def block_quotas(self) -> BlockQuotas:
        return self._quotas

    def acme_store(self, directory: Path | None) -> AcmeStore:
        assert directory is not None, "[acme-server] dir is required without [cluster]"
        return FileAcmeStore(directory)

    def notify_outbox(self, directory: Path) -> Outbox:
        return FileOutbox(directory / OUTBOX)

    def notify_state(self, directory: Path) -> NotifyState:
        return FileState(directory / STATE_FILE)

    def account_check(self, acme_server: str) -> AccountCheck | None:
        return None

    def problems(self) -> list[str]:
        return []

    def watch(self, metrics: Metrics) -> None:
        """Nothing of its own to export."""

    async def maintain(self, solvers: Callable[[], Iterable[ChallengeSolver]]) -> None:
        """Nothing: the journal's leftovers are removed at start (:meth:`ChallengeSolver.recover`)."""
