"""Proactive renewal: renew cached certificates that are due before their clients ask again.

Every ``[mgmt] renewal-interval`` seconds: refresh the ARI windows (RFC 9773) that are due where the
CA offers it (at most ``renewal-info-per-minute``, spread over the pass), then renew the
certificates that are due and were asked for recently (``renew-requested-within``, default twice
the certificate's lifetime), a few at a time, with jitter. Renewal orders carry
``replaces``. Failures back off (honouring the CA's Retry-After); the old certificate is served
while it is valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from acmems.ca.adapter import ari_identifier
from acmems.ca.session import AcmeCa
from acmems.challenges import ChallengeSolver
from acmems.core.backoff import capped_backoff
from acmems.core.csr import is_address, parse_csr
from acmems.core.policy import address_allowed, domain_allowed
from acmems.core.settings import DEFAULT_ACCOUNT, AuthSettings, Settings
from acmems.errors import AcmemsError
from acmems.issuance.issuer import Issuer, OrderRequest
from acmems.storage import CachedCertificate, CertificateStore

__all__ = ["RETRY_FIRST", "Renewer", "allowed_today", "ari_batch", "block_of", "renewal_candidates"]

log = logging.getLogger("acmems.renewer")
T = TypeVar("T")
_CONCURRENCY = 4
RETRY_FIRST = 60.0  # a failed renewal is tried again after this, doubling to _BACKOFF_MAX
_BACKOFF_MAX = 6 * 3600.0


class _Runtime(Protocol):
    settings: Settings
    ca: AcmeCa
    solvers: dict[str, ChallengeSolver]
    caches: dict[str, CertificateStore]
    issuer: Issuer
    cas: dict[str, AcmeCa]


def issuing_ca(runtime: _Runtime, entry: CachedCertificate) -> AcmeCa:
    """The CA that issued ``entry`` (its renewal-info and ``replaces`` belong there); the default
    account's when not known or no longer configured."""
    return runtime.cas.get(entry.ca or DEFAULT_ACCOUNT, runtime.ca)


def block_of(settings: Settings, storage: str, entry: CachedCertificate) -> AuthSettings | None:
    """The auth block a stored certificate belongs to, as far as it is known: the first with its
    verification and storage."""
    verification = entry.verification or settings.default_verification
    for block in settings.auth_blocks:
        if block.verification == verification and block.storage == storage:
            return block
    return None


def allowed_today(blocks: Sequence[AuthSettings], storage: str, names: Sequence[str]) -> bool:
    """Whether one of today's auth blocks, keeping its certificates in ``storage``, allows every one
    of ``names`` (a block removed after a compromise: none does)."""
    for block in blocks:
        if block.storage != storage:
            continue
        if all(address_allowed(block, n) if is_address(n) else domain_allowed(block, n) for n in names):
            return True
    return False


def ca_list(runtime: _Runtime, cache: CertificateStore, entry: CachedCertificate) -> tuple[str, ...]:
    """The accounts a renewal orders from, first again: those of the certificate's auth block."""
    block = block_of(runtime.settings, cache.name, entry)
    return block.ca if block is not None else (DEFAULT_ACCOUNT,)


def renewal_candidates(
    entries: list[CachedCertificate], now: datetime, requested_within: timedelta | None, backoff: dict[str, float]
) -> list[CachedCertificate]:
    """The entries to renew now: due, asked for recently, not backing off after a failure. Pure."""
    due = []
    for entry in entries:
        if now < entry.renew_at or backoff.get(entry.digest, 0.0) > now.timestamp():
            continue
        window = requested_within or 2 * (entry.not_after - entry.not_before)
        if entry.last_requested < (now - window).timestamp():
            continue  # nobody asked for it lately: let it expire
        due.append(entry)
    return due


def ari_batch(
    known: list[tuple[T, CachedCertificate]], now: datetime, per_minute: int, interval: float
) -> list[tuple[T, CachedCertificate]]:
    """The certificates whose renewal info (RFC 9773) to ask for in this pass: those whose next
    check is due and that have not expired, longest waiting first, at most as many as
    ``per_minute`` allows over one ``interval`` (at least one). Pure."""
    due = [(store, e) for store, e in known if e.next_ari_check <= now.timestamp() and e.not_after > now]
    due.sort(key=lambda pair: pair[1].next_ari_check)
    return due[: max(1, int(per_minute * interval / 60))]


class Renewer:
    """The background task; ``current`` gives the configuration in force (it may be reloaded)."""

    def __init__(self, current: Callable[[], _Runtime]) -> None:
        self.current = current
        self.backoff: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._disallowed: set[str] = set()  # digests not renewed because no block allows them: said once

    async def run(self) -> None:
        """Check every ``renewal-interval`` seconds until cancelled."""
        while True:
            interval = self.current().settings.mgmt.renewal_interval
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311 - jitter, not secrets
            try:
                await self.check_once()
            except Exception:
                log.exception("renewal check failed")

    async def check_once(self) -> None:
        """One pass: ARI windows, then the renewals that are due."""
        runtime = self.current()
        caches = [c for c in runtime.caches.values() if c.count()]
        if not caches:
            return
        try:
            await runtime.ca.start_ready()
        except AcmemsError as exc:
            log.warning("renewal check skipped: %s", exc.message)
            return
        slots = asyncio.Semaphore(_CONCURRENCY)
        if any(ca.offers_ari for ca in runtime.cas.values()):
            mgmt = runtime.settings.mgmt
            batch = ari_batch(
                [(c, e) for c in caches for e in c.entries() if issuing_ca(runtime, e).offers_ari],
                datetime.now(UTC),
                mgmt.renewal_info_per_minute,
                mgmt.renewal_interval,
            )
            spacing = 60.0 / mgmt.renewal_info_per_minute
            await asyncio.gather(
                *(
                    self._refresh_ari(issuing_ca(runtime, entry), cache, entry, slots, delay=i * spacing)
                    for i, (cache, entry) in enumerate(batch)
                )
            )
        within = runtime.settings.mgmt.renew_requested_within_days
        requested_within = timedelta(days=within) if within else None
        jobs = []
        for cache in caches:
            for entry in renewal_candidates(cache.entries(), datetime.now(UTC), requested_within, self.backoff):
                jobs.append(self._renew(runtime, cache, entry, slots))
        await asyncio.gather(*jobs)

    async def _refresh_ari(
        self, ca: AcmeCa, cache: CertificateStore, entry: CachedCertificate, slots: asyncio.Semaphore, delay: float
    ) -> None:
        await asyncio.sleep(delay)  # renewal-info-per-minute: spread over the pass, not all at once
        async with slots:
            try:
                _csr, chain = await cache.read(entry)
                when, next_check = await ca.renewal_info(chain)
            except (AcmemsError, OSError) as exc:
                log.info("ARI for %s not available now: %s", ", ".join(entry.names), exc)
                cache.update(dataclasses.replace(entry, next_ari_check=time.time() + 3600))
                return
        renew_at = when if when is not None else entry.renew_at
        if when is not None and when != entry.renew_at:
            log.info("ARI: %s is due for renewal from %s", ", ".join(entry.names), when.isoformat(timespec="seconds"))
        cache.update(dataclasses.replace(entry, renew_at=renew_at, next_ari_check=next_check))

    async def _renew(
        self, runtime: _Runtime, cache: CertificateStore, entry: CachedCertificate, slots: asyncio.Semaphore
    ) -> None:
        if not allowed_today(runtime.settings.auth_blocks, cache.name, entry.names):
            self._not_allowed(runtime, cache, entry)
            return
        self._disallowed.discard(entry.digest)
        async with slots:
            await asyncio.sleep(random.uniform(0, 0.5))  # noqa: S311 - spread the orders a little
            solver = runtime.solvers.get(entry.verification or runtime.settings.default_verification or "")
            if solver is None:
                log.warning(
                    "cannot renew %s: its verification %r is not configured", ", ".join(entry.names), entry.verification
                )
                self.backoff[entry.digest] = time.time() + _BACKOFF_MAX
                return
            block = block_of(runtime.settings, cache.name, entry)
            ours = True  # whether this renewal started the order (else a client's order reports itself)
            try:
                csr_pem, chain = await cache.read(entry)
                csr = parse_csr(csr_pem)
                issuer_ca = issuing_ca(runtime, entry)
                replaces = ari_identifier(chain) if issuer_ca.offers_ari else None
                request = OrderRequest(
                    csr,
                    solver,
                    cache,
                    entry.profile,
                    ca_names=ca_list(runtime, cache, entry),
                    replaces=replaces,
                    replaces_at=entry.ca or DEFAULT_ACCOUNT,
                    requested=False,
                    block=block.name if block is not None else "-",
                )
                ours = not runtime.issuer.running(request)
                task = runtime.issuer.start_issuance(request)
                await task
                if request.digest != entry.digest:
                    # Kept under the body as once posted (text around the PEM block): the renewal is
                    # stored under the request itself, where that body's client finds it too.
                    await cache.remove_serial(entry.serial)
            except (AcmemsError, OSError, ValueError) as exc:
                self._failed(runtime, cache, entry, block, exc, report=ours)
                return
            self._failures.pop(entry.digest, None)
            self.backoff.pop(entry.digest, None)
            runtime.issuer.metrics.renewals.labels("renewed").inc()
            log.info(
                "renewed %s ahead of its clients%s",
                ", ".join(entry.names),
                f" (replaces {replaces})" if replaces else "",
            )

    def _not_allowed(self, runtime: _Runtime, cache: CertificateStore, entry: CachedCertificate) -> None:
        """Today's policy no longer allows these names: not renewed, said once (log, event, /status)."""
        if entry.digest in self._disallowed:
            return
        self._disallowed.add(entry.digest)
        names = ", ".join(entry.names)
        reason = f"not renewed: no auth block allows {names} (storage {cache.name})"
        log.warning("%s; it is served until it expires", reason)
        runtime.issuer.metrics.renewals.labels("not-allowed").inc()
        notifier = runtime.issuer.notifier
        if notifier is not None:
            notifier.failed(cache.name, entry.digest, "-", entry.names, reason)

    def _failed(
        self,
        runtime: _Runtime,
        cache: CertificateStore,
        entry: CachedCertificate,
        block: AuthSettings | None,
        exc: AcmemsError | OSError | ValueError,
        *,
        report: bool,
    ) -> None:
        """A renewal failed: the next try after the backoff (or the CA's Retry-After); the event
        when this renewal started the order (``report``; else the client's order reported it)."""
        failures = self._failures.get(entry.digest, 0) + 1
        self._failures[entry.digest] = failures
        delay = capped_backoff(failures, RETRY_FIRST, _BACKOFF_MAX)
        if isinstance(exc, AcmemsError) and exc.retry_after:
            delay = max(delay, float(exc.retry_after))
        self.backoff[entry.digest] = time.time() + delay
        runtime.issuer.metrics.renewals.labels("failed").inc()
        notifier = runtime.issuer.notifier
        if notifier is not None and report:
            notifier.failed(
                cache.name,
                entry.digest,
                block.name if block is not None else "-",
                entry.names,
                exc.message if isinstance(exc, AcmemsError) else str(exc),
                attempt=failures,
                next_attempt=time.time() + delay,
            )
        log.warning(
            "renewal of %s failed (%s); next try in %.0f s; the old certificate is served until %s",
            ", ".join(entry.names),
            exc,
            delay,
            entry.not_after.isoformat(),
        )
