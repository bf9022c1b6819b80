"""The notifier as the server runs it: fed by the issuer, the renewer and the sign handler, and
shown on ``GET /status`` and ``/metrics``. Its outbox and state come from the backend (files in the
default account's directory, or the cluster database)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from acmems.core.csr import CsrInfo
from acmems.core.settings import AuthSettings, Settings
from acmems.issuance.issuer import Issuer
from acmems.issuance.renewer import block_of
from acmems.notify.notifier import Notifier
from acmems.notify.outbox import Outbox
from acmems.notify.state import NotifyState
from acmems.notify.status import StatusList, status_rows
from acmems.notify.watch import Watched
from acmems.storage import CachedCertificate, CertificateIndex, csr_digest

__all__ = ["NotifyService"]


class _Runtime(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def caches(self) -> Mapping[str, CertificateIndex]: ...

    @property
    def issuer(self) -> Issuer: ...


class NotifyService:
    """One per server process; ``current`` gives the runtime of the configuration in force."""

    def __init__(self, settings: Settings, outbox: Outbox, state: NotifyState, current: Callable[[], _Runtime]) -> None:
        self.current = current
        self.notifier = Notifier(settings.notify, outbox, state)

    def stores(self) -> list[tuple[str, list[CachedCertificate]]]:
        """(storage, certificates) of every store that keeps certificates."""
        return [(cache.name, cache.entries()) for cache in self.current().caches.values() if cache.keeps_certificates]

    def count(self) -> int:
        """How many certificates the stores keep."""
        return sum(cache.count() for cache in self.current().caches.values() if cache.keeps_certificates)

    def watched(self) -> list[Watched]:
        runtime = self.current()
        items = []
        for storage, entries in self.stores():
            for entry in entries:
                block = block_of(runtime.settings, storage, entry)
                track = self.notifier.pickups.get(storage, entry.digest)
                renewed = None
                fetches = {}
                if track is not None:
                    fetches = track.fetches
                    if track.renewed_serial == entry.serial:
                        renewed = track.renewed
                items.append(Watched(storage, block.name if block else "-", entry, renewed, fetches))
        return items

    def on_answer(self, block: AuthSettings, csr: CsrInfo, peer: str, chain: bytes) -> None:
        """The sign handler answered ``peer`` with ``chain``."""
        self.notifier.fetched(block.storage, csr_digest(csr.pem, block.profile), peer, chain)

    def rows(self, now: datetime) -> StatusList:
        runtime = self.current()
        return status_rows(
            self.stores(),
            now,
            runtime.settings.notify.thresholds,
            runtime.issuer.running_digests(),
            self.notifier.pickups.tracks,
        )
