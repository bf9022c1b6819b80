"""The server's ACME CA client (RFC 8555): one account, many orders at once.

certbot's ``acme`` package is synchronous: each blocking call runs in a bounded thread pool
(:meth:`AcmeCa._blocking`), one ``ClientV2`` (with its own nonces and HTTP session) per running
order. An order itself is :class:`acmems.ca.order.OrderRun`, which carries out the steps the pure
state machine in :mod:`acmems.core.order_steps` decides, polling with short intervals that honour
``Retry-After`` (the library's ``poll_and_finalize`` sleeps a fixed second per round).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from acme import client as acme_client
from acme import messages
from cryptography import x509
from josepy import b64
from josepy.jwa import RS256, JWASignature
from josepy.jwk import JWK

from acmems.ca import account as acme_account
from acmems.ca.account_files import AccountFiles, generate_key, jwk_and_alg
from acmems.ca.adapter import CaNetwork
from acmems.ca.order import OrderRecord, OrderRun
from acmems.ca.problems import ca_error
from acmems.challenges import ChallengeSolver
from acmems.core.settings import AccountSettings
from acmems.errors import CaError, ConfigError, Kind

__all__ = ["AcmeCa"]

log = logging.getLogger("acmems.acme_ca")
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

    def load_or_create_key(self, *, create: bool) -> None:
        """Load ``account.pem``; with ``create``, generate and save it (0600) if it is missing."""
        self.files.remove_stale_temp_files()
        if not self.files.has_key() and create:
            # EC P-256: every ACME request is signed with this key, and an ECDSA signature costs a
            # small fraction of an RSA-4096 one (eight or more per certificate).
            try:
                self.files.save_key(generate_key("ec", 256))
                log.info("generated a new account key at %s", self.files.key_path)
            except FileExistsError:
                log.info("another process saved the account key %s first: using it", self.files.key_path)
        self._key, self._alg = jwk_and_alg(self.files.load_key())

    @property
    def key_thumbprint(self) -> str:
        """The account key's RFC 7638 thumbprint (base64url), once :meth:`start` loaded it."""
        assert self._key is not None
        return b64.b64encode(self._key.thumbprint()).decode()

    def _may_register(self) -> bool:
        return any(v != "no" for v in self.settings.accept_terms_of_service)

    async def start(self, check_key: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Check the account at start: a key must exist, or we may create it (ToS accepted).

        ``check_key`` gets the key's thumbprint before anything is sent to the CA (a cluster makes
        sure it is the cluster's key). Registration itself happens on first use (or now, if the CA
        answers), so a CA that is down at start does not keep acmems from serving its cache.
        """
        create = self._may_register()
        if not self.files.has_key() and not create:
            raise ConfigError(
                f"no account key at {self.files.key_path}: run 'acme-register --gen-key --register "
                "--accept-terms-of-service CONFIG' first, or set [account] accept-terms-of-service = yes"
            )
        await self._blocking(functools.partial(self.load_or_create_key, create=create))
        if check_key is not None:
            await check_key(self.key_thumbprint)
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

    async def revoke(self, certificate: x509.Certificate, reason: int) -> None:
        """Revoke ``certificate`` (which this account ordered) for ``reason`` (RFC 5280 code).

        Raises:
            CaError: the CA refused (already revoked, unauthorized) or could not be reached.
        """
        await self.start_ready()
        client = self._take_client()
        try:
            await self._blocking(client.revoke, certificate, reason, net=_net(client))
        finally:
            self._idle.append(client)

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
        self,
        csr_pem: bytes,
        solver: ChallengeSolver,
        profile: str | None = None,
        replaces: str | None = None,
        record: OrderRecord | None = None,
    ) -> bytes:
        """Run one order for ``csr_pem`` to the end and return leaf + chain (PEM); with ``record``
        (a cluster lease), resume the order it saved, or save the new order's URL before answering.

        Raises:
            CaError: validation failed, rate-limited, the CA refused, or unreachable.
        """
        try:
            return await self._issue_once(csr_pem, solver, profile, replaces, record)
        except CaError as exc:
            if exc.problem_type != "accountDoesNotExist" or not self._may_register():
                raise
        # The CA no longer knows our account (a test CA restarted, a staging reset): register
        # again, as at start, and retry the order once.
        log.warning("the CA no longer knows the account %s; registering again", self._regr.uri if self._regr else "?")
        await self._reregister()
        return await self._issue_once(csr_pem, solver, profile, replaces, record)

    async def _issue_once(
        self,
        csr_pem: bytes,
        solver: ChallengeSolver,
        profile: str | None,
        replaces: str | None,
        record: OrderRecord | None,
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
                    return await self._order(client, csr_pem, solver, profile, replaces, record)
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
        record: OrderRecord | None,
    ) -> bytes:
        assert self._key is not None
        run = OrderRun(self._blocking, client, self._key, solver, ca=self.settings.acme_server)
        return await run.run(csr_pem, profile, replaces, record)


def _net(client: acme_client.ClientV2) -> CaNetwork:
    return cast(CaNetwork, client.net)
