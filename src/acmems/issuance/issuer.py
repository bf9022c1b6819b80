"""The one place that combines cache, single flight, the CA client and the solvers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acmems.ca.problems import falls_over
from acmems.ca.session import AcmeCa
from acmems.challenges import ChallengeSolver
from acmems.core.csr import CsrInfo
from acmems.core.pause_scope import classify_rate_limit, scopes_of
from acmems.core.quotas import BlockQuota
from acmems.core.rate_limits import Event, names_key, refusal, registered_domains
from acmems.core.settings import DEFAULT_ACCOUNT, AuthSettings
from acmems.errors import AcmemsError, CaError, DatabaseError, DnsUpdateError, IssuanceTimeout, Kind, LeaseLost
from acmems.metrics import Metrics
from acmems.storage import CertificateCache, CertificateStore, Claim, Origin, StaleFence, csr_digest, find_cached
from acmems.storage.pauses import CaPauses, MemoryPauses, NoSharedPauses
from acmems.storage.quotas import BlockQuotas, MemoryQuotas, QuotaExceeded, QuotaSlot
from acmems.storage.rate_log import RateLog

if TYPE_CHECKING:
    from acmems.notify.notifier import Notifier

__all__ = ["Issuer", "OrderRequest", "SignResult"]

log = logging.getLogger("acmems.issuer")
# How long a certificate whose requester gave up (504) is kept for its retry, for any storage.
_ORPHAN_LINGER = 600.0
_Key = tuple[str, str, str | None, bytes]  # storage, verification, profile, CSR


@dataclass(frozen=True, slots=True)
class SignResult:
    """A chain to answer with, whether it came from the cache, and which account issued it (if here)."""

    chain: bytes
    cache_hit: bool
    ca: str | None = None


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One certificate to order: the CSR, the verification that proves it, the store that keeps it,
    and the accounts to order it from, in turn.

    ``replaces`` (ARI, RFC 9773) is sent to the account ``replaces_at`` only; ``requested`` is False
    for the renewer's own orders (it reports their failures itself: it knows the next attempt);
    ``block`` names the auth block in the events.
    """

    csr: CsrInfo
    solver: ChallengeSolver
    cache: CertificateStore
    profile: str | None = None
    ca_names: Sequence[str] = (DEFAULT_ACCOUNT,)
    replaces: str | None = None
    replaces_at: str = DEFAULT_ACCOUNT
    requested: bool = True
    block: str = "-"
    quota: BlockQuota | None = None  # the block's limit-new-orders and limit-pending
    client: str | None = None  # the ACME account that asked (events name it)

    @property
    def key(self) -> _Key:
        """What the single flight is keyed by: one order per store, verification, profile and CSR."""
        return (self.cache.name, self.solver.name, self.profile, self.csr.pem)

    @property
    def digest(self) -> str:
        """The store's key of its certificate."""
        return csr_digest(self.csr.pem, self.profile)


@dataclass(frozen=True, slots=True)
class Issued:
    """What an issuance task ends with: the chain, and the account that issued it (None: another
    instance of the cluster did)."""

    chain: bytes
    ca: str | None


class Issuer:
    """Answers a checked CSR with a chain: from the cache, from a running order, or a new order."""

    def __init__(
        self,
        ca: AcmeCa,
        solvers: Mapping[str, ChallengeSolver],
        caches: Mapping[str, CertificateStore],
        *,
        metrics: Metrics | None = None,
        rate_log: RateLog | None = None,
        pauses: MemoryPauses | None = None,
        backoff: CaPauses | None = None,
        quotas: BlockQuotas | None = None,
        cas: Mapping[str, AcmeCa] | None = None,
        request_timeout: float = 60.0,
        notifier: Notifier | None = None,
    ) -> None:
        self.ca = ca
        self.cas = dict(cas) if cas else {DEFAULT_ACCOUNT: ca}  # by account name: an auth block's `ca` list
        self.request_timeout = request_timeout  # a CA's Retry-After beyond it: the next CA is tried
        self.solvers = solvers
        self.caches = caches
        self.metrics = metrics or Metrics()
        self.rate_log = rate_log  # with [account] rate limits: the orders and certificates they count
        # The CA's rateLimited pauses, each scoped to what it refused: this process's, and a
        # cluster's shared ones.
        self.pauses = pauses if pauses is not None else MemoryPauses()
        self.backoff = backoff or NoSharedPauses()
        self.quotas = quotas if quotas is not None else MemoryQuotas()  # the blocks' limit-* keys
        self.notifier = notifier  # told of each certificate issued, and of each failed order a client asked for
        self._inflight: dict[_Key, asyncio.Task[Issued]] = {}
        self._orphans: set[_Key] = set()

    async def sign(
        self,
        csr: CsrInfo,
        block: AuthSettings,
        timeout: float,
        *,
        replaces: str | None = None,
        client: str | None = None,
    ) -> SignResult:
        """The chain for ``csr`` under ``block``'s verification and storage; ``replaces`` (an ACME
        client's ARI certificate id) is relayed to the block's first CA; ``client`` (its account) is
        named in the events.

        Raises:
            AcmemsError: 400 wildcard without DNS-01; the CA's errors (421, 429, 502, 503); 504 when
                ``timeout`` passes first (the order goes on and a retry gets its result).
        """
        cache = self.caches[block.storage]
        solver = self.solvers[block.verification]
        if csr.has_wildcard and solver.challenge_type not in ("dns-01", "dns-persist-01"):
            wildcards = ", ".join(n for n in csr.names if n.startswith("*."))
            raise AcmemsError(
                f"{wildcards} needs DNS-01 validation, but auth block {block.name!r} uses "
                f"{solver.challenge_type} verification {solver.name!r}",
                kind=Kind.WILDCARD_NEEDS_DNS01,
            )
        profile = block.profile
        cached = await find_cached(cache, csr, profile)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return SignResult(cached, cache_hit=True)
        self.metrics.cache_misses.inc()
        quota = BlockQuota(block.name, block.limit_new_orders, block.limit_pending)
        request = OrderRequest(
            csr, solver, cache, profile, block.ca, replaces, block.ca[0], block=block.name, quota=quota, client=client
        )
        task = self.start_issuance(request)
        key = request.key
        try:
            issued = await asyncio.wait_for(asyncio.shield(task), timeout)
        except AcmemsError as exc:
            # The old certificate keeps being served while it is valid, if its renewal fails.
            old = await find_cached(cache, csr, profile, allow_due=True)
            if old is None or isinstance(exc, IssuanceTimeout):
                raise
            log.warning(
                "renewal for %s failed (%s); answering the cached certificate, still valid",
                ", ".join(csr.names),
                exc.message,
            )
            return SignResult(old, cache_hit=True)
        except TimeoutError:
            self._orphans.add(key)
            raise IssuanceTimeout(
                "the certificate is still being issued; post the same CSR again in a minute to get it"
            ) from None
        return SignResult(issued.chain, cache_hit=False, ca=issued.ca)

    def start_issuance(self, request: OrderRequest) -> asyncio.Task[Issued]:
        """The running order for this CSR, storage, verification and profile, or a new one (single flight)."""
        key = request.key
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._issue_and_store(request))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        return task

    async def _issue_and_store(self, request: OrderRequest) -> Issued:
        csr, cache, digest = request.csr, request.cache, request.digest
        while True:
            # A shared store grants this to one instance of the cluster at a time; the others wait
            # for its result (the same bytes) instead of ordering again.
            claim = await cache.claim(digest, request.solver.name)
            if claim is not None:
                break
            await cache.wait_released(digest, request.solver.name)
            elsewhere = await self._issued_elsewhere(request)
            if elsewhere is not None:
                return elsewhere
        try:
            # A shared store: another instance may have stored it between our miss and the claim.
            issued = await self._issued_elsewhere(request) if claim.fence is not None else None
            if issued is None:
                renewal = not request.requested or request.replaces is not None or await self._had_one(request)
                slot = await self._take_quota(request, claim, renewal)
                try:
                    chain, used = await self._from_cas(request, claim)
                finally:
                    if slot is not None:
                        await self._finish_quota(slot)
                origin = Origin(request.profile, request.solver.name, request.requested, claim.fence, used)
                await self._store(csr, chain, cache, origin)
                issued = Issued(chain, used)
                if self.notifier is not None:
                    self.notifier.issued(
                        cache.name, digest, request.block, csr.names, chain, request.profile, renewal, request.client
                    )
        except AcmemsError as exc:
            await claim.release()
            if request.requested and self.notifier is not None and not isinstance(exc, QuotaExceeded | LeaseLost):
                self.notifier.failed(cache.name, digest, request.block, csr.names, exc.message, client=request.client)
            raise
        except BaseException:
            claim.abandon()  # cancelled (acmems stops): the lease lapses, another instance resumes
            raise
        await claim.release()
        return issued

    async def _take_quota(self, request: OrderRequest, claim: Claim, renewal: bool) -> QuotaSlot | None:
        """A new order a client asked for counts for its block (renewals and resumed orders never);
        over a quota of the block: 429."""
        if renewal or claim.saved_order is not None or request.quota is None:
            return None
        block = request.quota.block
        slot = None
        if request.quota.limited:
            try:
                slot = await self.quotas.take(request.quota)
            except QuotaExceeded as exc:
                self.metrics.block_refusals.labels(block, exc.limit).inc()
                log.warning("not ordering for %s: %s", ", ".join(request.csr.names), exc.message)
                raise
        self.metrics.block_orders.labels(block).inc()
        return slot

    async def _finish_quota(self, slot: QuotaSlot) -> None:
        try:
            await slot.finish()
        except AcmemsError as exc:  # the database: the slot frees when this instance's liveness lapses
            log.warning("cannot count the order as finished for its block's quota: %s", exc.message)

    async def _had_one(self, request: OrderRequest) -> bool:
        if self.notifier is None and (request.quota is None or not request.quota.limited):
            return False  # only the events and the quotas tell renewals apart
        return await find_cached(request.cache, request.csr, request.profile, allow_due=True) is not None

    def running(self, request: OrderRequest) -> bool:
        """Whether an order for this request runs now (then a new one joins it)."""
        task = self._inflight.get(request.key)
        return task is not None and not task.done()

    def running_digests(self) -> set[tuple[str, str]]:
        """(storage, digest) of every order running now."""
        return {
            (storage, csr_digest(pem, profile))
            for (storage, _, profile, pem), task in self._inflight.items()
            if not task.done()
        }

    async def _issued_elsewhere(self, request: OrderRequest) -> Issued | None:
        stored = await request.cache.get(request.csr.pem, request.profile)
        if stored is None:
            return None
        log.info("another instance of the cluster issued the certificate for %s", ", ".join(request.csr.names))
        return Issued(stored, None)

    async def _from_cas(self, request: OrderRequest, claim: Claim) -> tuple[bytes, str]:
        """The chain from the first account of ``ca_names`` that gives one, and that account's name:
        the next is tried only when :func:`falls_over` says the next CA would not say the same."""
        csr, ca_names = request.csr, request.ca_names
        for position, name in enumerate(ca_names):
            ca = self.cas[name]
            if position:
                claim.saved_order = None  # an order saved at the first CA cannot be resumed at this one
            their_replaces = request.replaces if name == request.replaces_at else None
            try:
                counted = ca.settings.rate_limits is not None and self.rate_log is not None and not their_replaces
                if counted:  # ARI renewals are exempt
                    await self._check_rate_limits(csr, claim, ca)
                their_profile = self._profile_at(ca, name, request.profile)
                chain = await self._order(csr, request.solver, their_profile, their_replaces, claim, ca, name)
                if counted:
                    await self._count(csr, "certificate", ca)
            except AcmemsError as exc:
                if position == len(ca_names) - 1 or not falls_over(exc, self.request_timeout):
                    raise
                log.warning(
                    "CA %s failed for %s (%s); trying %s",
                    name,
                    ", ".join(csr.names),
                    exc.message,
                    ca_names[position + 1],
                )
                continue
            if position:
                log.info("issued by %s, the fallback CA: the next order goes to %s first again", name, ca_names[0])
            return chain, name
        raise AssertionError("an auth block names at least one account")

    def _profile_at(self, ca: AcmeCa, name: str, profile: str | None) -> str | None:
        offered = ca.profiles
        if profile is not None and offered is not None and profile not in offered:
            log.info("CA %s does not offer the profile %r; ordering its default profile", name, profile)
            return None
        return profile

    async def _check_rate_limits(self, csr: CsrInfo, claim: Claim, ca: AcmeCa) -> None:
        """429 (final) when the order would go over a limit the CA would refuse it for; else the
        new order is counted (a resumed one was counted by the instance that sent it)."""
        assert self.rate_log is not None and ca.settings.rate_limits is not None
        events = await self.rate_log.events(ca.settings.acme_server)
        refused = refusal(ca.settings.rate_limits, events, csr.names)
        if refused is not None:
            self.metrics.rate_limit_refusals.labels(refused.limit.key).inc()
            raise CaError(refused.message, kind=Kind.RATE_LIMITED, retry_after=refused.retry_after)
        if claim.saved_order is None:
            await self._count(csr, "order", ca)

    async def _count(self, csr: CsrInfo, kind: str, ca: AcmeCa) -> None:
        assert self.rate_log is not None
        event = Event(time.time(), kind, names_key(csr.names), registered_domains(csr.names))
        try:
            await self.rate_log.record(ca.settings.acme_server, event)
        except AcmemsError as exc:  # the database: this one goes uncounted
            log.warning("cannot count %s for the rate limits: %s", kind, exc.message)

    async def _order(
        self,
        csr: CsrInfo,
        solver: ChallengeSolver,
        profile: str | None,
        replaces: str | None,
        claim: Claim,
        ca: AcmeCa,
        ca_name: str = DEFAULT_ACCOUNT,
    ) -> bytes:
        started = time.monotonic()
        vtype = solver.challenge_type
        account = ca.settings.acme_server
        try:
            await self._check_pauses(account, csr.names)
            chain = await ca.issue(csr.request_pem, solver, profile, replaces, claim)
        except AcmemsError as exc:
            if isinstance(exc, CaError) and exc.problem_type == "rateLimited" and exc.retry_after and not exc.held:
                await self._hold(account, csr.names, exc)
            self.metrics.issuances.labels("failed", vtype).inc()
            if isinstance(exc, CaError):
                self.metrics.ca_errors.labels(exc.problem_type or f"http-{exc.status}").inc()
            elif isinstance(exc, DnsUpdateError):
                self.metrics.dns_errors.labels(solver.name).inc()
            log.warning(
                "issuance for %s failed: %s%s",
                ", ".join(csr.names),
                exc.message,
                f" ({exc.log_detail})" if exc.log_detail else "",
            )
            raise
        duration = time.monotonic() - started
        self.metrics.issuances.labels("issued", vtype).inc()
        self.metrics.issuance_seconds.labels(vtype).observe(duration)
        log.info(
            "issued a certificate for %s in %.3f s (verification %s, ca %s)",
            ", ".join(csr.names),
            duration,
            solver.name,
            ca_name,
        )
        return chain

    async def _check_pauses(self, account: str, names: Sequence[str]) -> None:
        scopes = scopes_of(names)
        await self.pauses.check(account, scopes)
        await self.backoff.check(account, scopes)

    async def _hold(self, account: str, names: Sequence[str], exc: CaError) -> None:
        assert exc.retry_after is not None
        scope = classify_rate_limit(exc.message, names)
        log.warning(
            "the CA rate-limited %s: no order for it for %d s (%s)", scope.describe(), exc.retry_after, exc.message
        )
        await self.pauses.hold(account, scope, exc.retry_after, exc.message)
        try:
            await self.backoff.hold(account, scope, exc.retry_after, exc.message)
        except AcmemsError as failed:  # the database: this instance still holds it (self.pauses)
            log.warning("cannot share the CA's pause with the cluster: %s", failed.message)

    async def _store(self, csr: CsrInfo, chain: bytes, cache: CertificateCache, origin: Origin) -> None:
        try:
            await cache.put(csr.pem, chain, origin)
        except StaleFence as exc:
            log.warning(
                "storage %s: not storing the certificate for %s: another instance took its order over (%s)",
                cache.name,
                ", ".join(csr.names),
                exc,
            )
        except (OSError, ValueError, DatabaseError) as exc:
            self.metrics.storage_errors.inc()
            log.error(
                "storage %s: cannot cache the certificate for %s: %s; answering it uncached",
                cache.name,
                ", ".join(csr.names),
                exc.message if isinstance(exc, AcmemsError) else exc,
            )

    def _finished(self, key: _Key, task: asyncio.Task[Issued]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if key in self._orphans:
                log.warning("an issuance nobody waits for any more failed: %s", exc)
        if key in self._orphans and not task.cancelled() and task.exception() is None:
            # Keep the result for the client's retry, even where the storage does not cache.
            asyncio.get_running_loop().call_later(_ORPHAN_LINGER, self._forget, key, task)
            self._orphans.discard(key)
            return
        self._orphans.discard(key)
        self._forget(key, task)

    def _forget(self, key: _Key, task: asyncio.Task[Issued]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
