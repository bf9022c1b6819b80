"""The :class:`Backend` Protocol: what is either files or PostgreSQL, asked for by what uses it."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

from acmems.challenges import ChallengeSolver
from acmems.challenges.http01 import TokenTable
from acmems.core.settings import StorageSettings
from acmems.metrics import Metrics
from acmems.notify.outbox import Outbox
from acmems.notify.state import NotifyState
from acmems.storage import CertificateStore
from acmems.storage.acme_store import AcmeStore
from acmems.storage.dns_journal import DnsJournal
from acmems.storage.pauses import CaPauses
from acmems.storage.quotas import BlockQuotas
from acmems.storage.rate_log import RateLog

__all__ = ["AccountCheck", "Backend", "Role", "Schema"]

#: called with the account key's thumbprint before anything is sent to the CA
AccountCheck = Callable[[str], Awaitable[None]]


class Role(enum.Enum):
    """Who opens a backend."""

    SERVER = "server"  # the main process: creates or upgrades the schema, announces the instance
    WORKER = "worker"  # a worker process: reads the same stores with a small pool
    COMMAND = "command"  # acmems list, import, revoke, db init, check: for the command's length


class Schema(enum.Enum):
    """What a command's :meth:`Backend.open` does with the database schema."""

    NEEDED = "needed"  # it must exist at this acmems' version
    CREATE = "create"  # create or upgrade it
    ANY = "any"  # do not look (acmems check reports it)


class Backend(Protocol):
    """Everything that one acmems keeps itself and a cluster shares through its database."""

    #: added to each ``/sign`` log line: which instance answered (empty for one acmems)
    label: str

    async def open(self, schema: Schema = Schema.CREATE) -> None:
        """Connect (a server: create or upgrade the schema and announce itself; a command: as
        ``schema`` says). Raises :class:`acmems.errors.AcmemsError` naming what to fix."""
        ...

    async def close(self) -> None:
        """Release what :meth:`open` took; what is not delivered stays where it is kept."""
        ...

    async def status(self) -> str | None:
        """One line on the shared database for ``acmems check`` and ``acmems db init`` (None: none)."""
        ...

    def store(self, settings: StorageSettings, *, track_requests: bool = False) -> CertificateStore:
        """The certificate store of a ``[storage]`` block (``track_requests``: a worker reports
        which certificates its clients asked for)."""
        ...

    def http01_tokens(self) -> TokenTable:
        """Where HTTP-01 tokens are published beyond this process (nowhere for one acmems)."""
        ...

    def dns_journal(self, directory: Path) -> DnsJournal:
        """The DNS-01 values added and not yet removed (a file in the account ``directory``, or
        the cluster's table); one object per place, kept across reloads."""
        ...

    def rate_log(self, directory: Path) -> RateLog:
        """The events the rate limits count (a file in the account ``directory``, or the cluster's table)."""
        ...

    def ca_pauses(self) -> CaPauses:
        """The CA's ``rateLimited`` pauses beyond this process."""
        ...

    def block_quotas(self) -> BlockQuotas:
        """Where the auth blocks' ``limit-new-orders`` and ``limit-pending`` are counted."""
        ...

    def acme_store(self, directory: Path | None) -> AcmeStore:
        """The ACME server's accounts, orders and nonces (``[acme-server] dir``, or the database)."""
        ...

    def notify_outbox(self, directory: Path) -> Outbox:
        """The events not yet delivered (``directory``: the default account's)."""
        ...

    def notify_state(self, directory: Path) -> NotifyState:
        """The notifier's marks and pickups (``directory``: the default account's)."""
        ...

    def account_check(self, acme_server: str) -> AccountCheck | None:
        """What must hold of the account key before it is used (a cluster: one key for all)."""
        ...

    def problems(self) -> list[str]:
        """What makes this acmems unhealthy (for ``/health``); empty when fine."""
        ...

    def watch(self, metrics: Metrics) -> None:
        """Export the backend's own state on ``/metrics``."""
        ...

    async def maintain(self, solvers: Callable[[], Iterable[ChallengeSolver]]) -> None:
        """Run for the server's life: remove what others that are gone left behind (DNS-01 values
        of ``solvers``, dead instances' rows). Returns at once where there is nothing to do."""
        ...
