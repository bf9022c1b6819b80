"""The notifier as the server runs it: built from the configuration, fed by the issuer, the
renewer and the sign handler, and shown on ``GET /status`` and ``/metrics``.

Its outbox and state live in the default account's directory (``notify-outbox/``,
``notify-state.json``), which every acmems has and keeps across restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from acmems.core.csr import CsrInfo
from acmems.core.settings import AuthSettings, Settings
from acmems.http.status_page import render_status
from acmems.issuance.issuer import Issuer
from acmems.issuance.renewer import block_of
from acmems.notify.notifier import Notifier
from acmems.notify.outbox import FileOutbox, Outbox
from acmems.notify.state import STATE_FILE, FileState, NotifyState
from acmems.notify.status import STATES, StatusList, status_rows
from acmems.notify.watch import Watched
from acmems.storage import CachedCertificate, CertificateStore, csr_digest

if TYPE_CHECKING:
    from acmems.cluster import ClusterDb

__all__ = ["OUTBOX", "NotifyService"]

OUTBOX = "notify-outbox"


class _Runtime(Protocol):
    settings: Settings
    caches: dict[str, CertificateStore]
    issuer: Issuer


class NotifyService:
    """One per server process; ``current`` gives the runtime of the configuration in force."""

    def __init__(
        self, settings: Settings, directory: Path, current: Callable[[], _Runtime], cluster: ClusterDb | None = None
    ) -> None:
        self.current = current
        outbox: Outbox
        state: NotifyState
        if cluster is not None:
            from acmems.cluster.notify_store import DatabaseOutbox, DatabaseState

            outbox, state = DatabaseOutbox(cluster), DatabaseState(cluster)
        else:
            outbox, state = FileOutbox(directory / OUTBOX), FileState(directory / STATE_FILE)
        self.notifier = Notifier(settings.notify, outbox, state)

    def stores(self) -> list[tuple[str, list[CachedCertificate]]]:
        """(storage, certificates) of every store that keeps certificates."""
        return [(cache.name, cache.entries()) for cache in self.current().caches.values() if cache.where != "-"]

    def count(self) -> int:
        """How many certificates the stores keep."""
        return sum(cache.count() for cache in self.current().caches.values() if cache.where != "-")

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

    async def status_page(self, request: web.BaseRequest) -> web.StreamResponse:
        """``GET /status`` (``?page=N``, ``?state=NAME``)."""
        now = datetime.now(UTC)
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            page = 1
        state = request.query.get("state")
        body = render_status(self.rows(now), now, page, state if state in STATES else None)
        return web.Response(body=body, content_type="text/html", charset="utf-8")
