"""The server's ACME CA client (RFC 8555): one account, many orders at once.

certbot's ``acme`` package is synchronous: each blocking call runs in a bounded thread pool
(:meth:`AcmeCa._blocking`), one ``ClientV2`` (with its own nonces and HTTP session) per running
order. What to do next in an order is decided by the pure state machine in
:mod:`acmems.order_steps`; this module only carries the steps out, on the event loop, polling with
short intervals that honour ``Retry-After`` (the library's ``poll_and_finalize`` sleeps a fixed
second per round).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from acme import client as acme_client
from acme import messages
from josepy.jwa import RS256, JWASignature
from josepy.jwk import JWK

from acmems import acme_account, acme_adapter
from acmems import order_steps as steps
from acmems.account import AccountFiles, generate_key, jwk_and_alg
from acmems.acme_adapter import CaNetwork
from acmems.acme_problems import ca_error, format_chain, problem_of, retry_after_seconds
from acmems.challenges import ChallengeSolver
from acmems.errors import AcmemsError, CaError, ConfigError, Kind
from acmems.settings import AccountSettings

__all__ = ["AcmeCa"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class AcmeCa:
    """One ACME account at one CA, used by many orders at once.

    Args:
        settings: ``[account]``.
        max_orders: orders running at once (each holds one worker thread while it calls the CA).
        order_timeout: seconds an order may take before it is given up.
    """

    def __init__(self, settings: AccountSettings, *, max_orders: int = 16, order_timeout: float = 300.0) -> None:
        if settings.dir is None:
            raise ConfigError("[account] needs 'dir', the folder for account.pem and registration.json")
        self.settings = settings
        self.files = AccountFiles(settings.dir)
        self.order_timeout = order_timeout
        self._executor = ThreadPoolExecutor(max_workers=max_orders, thread_name_prefix="acme")
        self._slots = asyncio.Semaphore(max_orders)
        self._idle: list[acme_client.ClientV2] = []
        self._key: JWK | None = None
        self._alg: JWASignature = RS256
        self._directory: messages.Directory | None = None
        self._regr: messages.RegistrationResource | None = None
        self._ready_lock = asyncio.Lock()

    # ------------------------------------------------------------------------------- set-up

    async def _blocking(self, fn: Callable[..., T], *args: Any, net: CaNetwork | None = None) -> T:
        """Run a synchronous ``acme`` call in the worker threads; its failures become the client's
        answer (:func:`ca_error`). Cancellation, ``KeyboardInterrupt`` and ``SystemExit`` pass through."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except Exception as exc:
            raise ca_error(exc, self.settings.acme_server, net.last_response if net else None) from exc

    def _load_or_create_key(self, *, create: bool) -> None:
        self.files.remove_stale_temp_files()
        if not self.files.has_key() and create:
            # EC P-256: every ACME request is signed with this key, and an ECDSA signature costs a
            # small fraction of an RSA-4096 one (eight or more per certificate).
            self.files.save_key(generate_key("ec", 256))
            log.info("generated a new account key at %s", self.files.key_path)
        self._key, self._alg = jwk_and_alg(self.files.load_key())

    def _may_register(self) -> bool:
        return any(v != "no" for v in self.settings.accept_terms_of_service)

    async def start(self) -> None:
        """Check the account at start: a key must exist, or we may create it (ToS accepted).

        Registration itself happens on first use (or now, if the CA answers), so a CA that is down
        at start does not keep acmems from serving its cache.
        """
        create = self._may_register()
        if not self.files.has_key() and not create:
            raise ConfigError(
                f"no account key at {self.files.key_path}: run 'acme-register --gen-key --register "
                "--accept-terms-of-service CONFIG' first, or set [account] accept-terms-of-service = yes"
            )
        await self._blocking(functools.partial(self._load_or_create_key, create=create))
        try:
            await self.start_ready()
        except CaError as exc:
            log.warning(
                "the ACME CA is not reachable at start (%s); will retry on the first request",
                exc.log_detail or exc.message,
            )

    async def start_ready(self) -> None:
        """Make sure the directory and account are loaded (raises the CA's errors)."""
        async with self._ready_lock:
            if self._directory is None or self._regr is None:
                await self._blocking(self._prepare_sync)

    def _register_sync(self) -> messages.RegistrationResource:
        assert self._key is not None
        return acme_account.register(self.settings, self.files, self._key, self._alg)

    def _prepare_sync(self) -> None:
        assert self._key is not None
        regr = self.files.load_registration()
        if regr is None:
            if not self.settings.accept_terms_of_service:
                raise ConfigError(f"no registration at {self.files.registration_path}; run acme-register")
            regr = self._register_sync()
            log.info(
                "registered a new ACME account at %s: %s (no registration.json was found and "
                "accept-terms-of-service allows it)",
                self.settings.acme_server,
                regr.uri,
            )
        net = acme_account.ca_network(self.settings, self._key, self._alg, regr)
        self._directory = acme_account.fetch_directory(self.settings, net)
        self._regr = regr
        self._idle.append(acme_client.ClientV2(self._directory, net))

    async def _reregister(self) -> None:
        async with self._ready_lock:
            self._idle.clear()
            self._directory = None
            self._regr = None
            regr = await self._blocking(self._register_sync)
            log.info("registered the ACME account again: %s", regr.uri)
            await self._blocking(self._prepare_sync)

    @property
    def profiles(self) -> dict[str, str] | None:
        """The profiles the CA's directory lists (None: no profile support, or not fetched yet)."""
        if self._directory is None:
            return None
        offered = self._directory.meta.profiles
        return dict(offered) if offered else {}

    @property
    def offers_ari(self) -> bool:
        """Whether the CA's directory has ``renewalInfo`` (RFC 9773)."""
        if self._directory is None:
            return False
        try:
            self._directory["renewalInfo"]
        except KeyError:
            return False
        return True

    def check_profiles(self, wanted: set[str]) -> None:
        """Raise :class:`ConfigError` for a configured profile the CA does not offer."""
        offered = self.profiles
        if offered is None:
            return
        for profile in sorted(wanted):
            if profile not in offered:
                listed = ", ".join(sorted(offered)) or "none"
                raise ConfigError(
                    f"profile {profile!r} is not offered by the CA at {self.settings.acme_server} (it offers: {listed})"
                )

    async def renewal_info(self, chain: bytes) -> tuple[datetime.datetime | None, float]:
        """RFC 9773: a point chosen at random in the CA's suggested renewal window (None without
        ARI) and when to ask again (Unix time, from the CA's Retry-After)."""
        await self.start_ready()
        client = self._take_client()
        try:
            when, next_check = await self._blocking(client.renewal_time, chain, net=_net(client))
        finally:
            self._idle.append(client)
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when, next_check.timestamp()

    def close(self) -> None:
        """Stop the worker threads (running calls finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------ orders

    def _take_client(self) -> acme_client.ClientV2:
        if self._idle:
            return self._idle.pop()
        assert self._key is not None and self._directory is not None
        net = acme_account.ca_network(self.settings, self._key, self._alg, self._regr)
        return acme_client.ClientV2(self._directory, net)

    async def issue(
        self, csr_pem: bytes, solver: ChallengeSolver, profile: str | None = None, replaces: str | None = None
    ) -> bytes:
        """Run one order for ``csr_pem`` to the end and return leaf + chain (PEM).

        Raises:
            CaError: validation failed, rate-limited, the CA refused, or unreachable.
        """
        try:
            return await self._issue_once(csr_pem, solver, profile, replaces)
        except CaError as exc:
            if exc.problem_type != "accountDoesNotExist" or not self._may_register():
                raise
        # The CA no longer knows our account (a test CA restarted, a staging reset): register
        # again, as at start, and retry the order once.
        log.warning("the CA no longer knows the account %s; registering again", self._regr.uri if self._regr else "?")
        await self._reregister()
        return await self._issue_once(csr_pem, solver, profile, replaces)

    async def _issue_once(
        self, csr_pem: bytes, solver: ChallengeSolver, profile: str | None, replaces: str | None
    ) -> bytes:
        await self.start_ready()
        if profile is not None:
            try:
                self.check_profiles({profile})
            except ConfigError as exc:
                raise CaError(exc.message, kind=Kind.CA_REFUSED) from None
        async with self._slots:
            client = self._take_client()
            reuse = True
            try:
                async with asyncio.timeout(self.order_timeout):
                    return await self._order(client, csr_pem, solver, profile, replaces)
            except TimeoutError:
                reuse = False
                raise CaError(
                    "the CA did not finish the order in time; retry later", kind=Kind.CA_UNREACHABLE
                ) from None
            except CaError as exc:
                if exc.kind is Kind.CA_UNREACHABLE:
                    # The CA may have restarted: drop pooled sessions (their nonces and connections).
                    self._idle.clear()
                    reuse = False
                raise
            finally:
                _net(client).last_response = None
                # Only sessions of the current registration go back to the pool.
                if reuse and client.net.account is self._regr:
                    self._idle.append(client)

    async def _order(
        self,
        client: acme_client.ClientV2,
        csr_pem: bytes,
        solver: ChallengeSolver,
        profile: str | None,
        replaces: str | None,
    ) -> bytes:
        """Carry out :func:`order_steps.next_step` until the chain is downloaded or the order fails."""
        net = _net(client)
        orderr = await self._blocking(acme_adapter.new_order, client, csr_pem, profile, replaces, net=net)
        state = _order_state(orderr.body, [_authorization_state(a) for a in orderr.authorizations])
        authorizations = list(orderr.authorizations)
        published: list[tuple[str, str, str]] = []  # identifier, token, validation
        try:
            while True:
                step = steps.next_step(state)
                if not isinstance(step, steps.AnswerChallenges | steps.PollAuthorizations) and published:
                    await self._clean_up(solver, published)  # validation is over: remove before finalizing
                if isinstance(step, steps.AnswerChallenges):
                    await self._answer(client, [authorizations[i] for i in step.authorizations], solver, published)
                    state = steps.after_answer(state)
                elif isinstance(step, steps.PollAuthorizations):
                    await asyncio.sleep(step.delay)
                    polled = await asyncio.gather(*(self._poll(client, authorizations[i]) for i in step.authorizations))
                    for i, (authzr, _response) in zip(step.authorizations, polled, strict=True):
                        authorizations[i] = authzr
                    updated = {
                        i: _authorization_state(a) for i, (a, _r) in zip(step.authorizations, polled, strict=True)
                    }
                    state = steps.after_authorizations(state, updated, _latest_retry_after([r for _a, r in polled]))
                elif isinstance(step, steps.Finalize):
                    try:
                        orderr = await self._blocking(client.begin_finalization, orderr, net=net)
                    except CaError as exc:
                        if exc.problem_type != "orderNotReady":
                            raise
                        state = steps.after_not_ready(state)
                    else:
                        body = orderr.body
                        state = steps.after_finalize(
                            state, _status(body.status), body.certificate, problem_of(body.error)
                        )
                elif isinstance(step, steps.PollOrder):
                    await asyncio.sleep(step.delay)
                    body, response = await self._blocking(acme_adapter.fetch_order, client, orderr.uri, net=net)
                    orderr = orderr.update(body=body)
                    state = steps.after_order(
                        state,
                        _status(body.status),
                        body.certificate,
                        problem_of(body.error),
                        retry_after_seconds(response),
                    )
                elif isinstance(step, steps.Download):
                    response = await self._blocking(acme_adapter.post_as_get, client, step.url, net=net)
                    return format_chain(response.text)
                else:
                    raise step.error
        finally:
            await self._clean_up(solver, published)

    async def _answer(
        self,
        client: acme_client.ClientV2,
        authorizations: list[messages.AuthorizationResource],
        solver: ChallengeSolver,
        published: list[tuple[str, str, str]],
    ) -> None:
        """Publish every validation first, then tell the CA (it may check one while we publish the next)."""
        assert self._key is not None
        answers = []
        for authzr in authorizations:
            challb = _find_challenge(authzr, solver)
            response, validation = challb.response_and_validation(self._key)
            identifier, token = authzr.body.identifier.value, challb.chall.encode("token")
            await solver.present(identifier, token, validation)
            published.append((identifier, token, validation))
            answers.append((challb, response))
        for challb, response in answers:
            await self._blocking(client.answer_challenge, challb, response, net=_net(client))

    async def _poll(
        self, client: acme_client.ClientV2, authzr: messages.AuthorizationResource
    ) -> tuple[messages.AuthorizationResource, float | None]:
        updated, response = await self._blocking(client.poll, authzr, net=_net(client))
        return updated, retry_after_seconds(response)

    async def _clean_up(self, solver: ChallengeSolver, published: list[tuple[str, str, str]]) -> None:
        while published:
            identifier, token, validation = published.pop()
            try:
                await solver.cleanup(identifier, token, validation)
            except AcmemsError as exc:
                log.warning(
                    "cleanup of the %s challenge for %s failed: %s", solver.challenge_type, identifier, exc.message
                )


def _net(client: acme_client.ClientV2) -> CaNetwork:
    return cast(CaNetwork, client.net)


def _status(status: messages.Status) -> str:
    return str(status.name)


def _latest_retry_after(values: list[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


def _order_state(body: messages.Order, authorizations: list[steps.AuthorizationState]) -> steps.OrderState:
    return steps.OrderState(
        status=_status(body.status),
        authorizations=tuple(authorizations),
        certificate=body.certificate,
        problem=problem_of(body.error),
    )


def _authorization_state(authzr: messages.AuthorizationResource) -> steps.AuthorizationState:
    body = authzr.body
    name = f"*.{body.identifier.value}" if body.wildcard else body.identifier.value
    problem = next((problem_of(c.error) for c in body.challenges if c.error is not None), None)
    return steps.AuthorizationState(name, _status(body.status), problem)


def _find_challenge(authzr: messages.AuthorizationResource, solver: ChallengeSolver) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if challb.chall.typ == solver.challenge_type:
            return challb
    offered = ", ".join(c.chall.typ for c in authzr.body.challenges) or "none"
    name = authzr.body.identifier.value
    if authzr.body.wildcard:
        name = f"*.{name}"
    raise CaError(
        f"the CA offers no {solver.challenge_type} challenge for {name} (offered: {offered}); "
        f"use a verification of another type for it",
        kind=Kind.VALIDATION_FAILED,
    )
