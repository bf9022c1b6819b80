"""The ACME CA client (RFC 8555): account, orders, challenges, polling, finalization.

Built on certbot's ``acme`` package, which is synchronous: each blocking call runs in a bounded
thread pool, one ``ClientV2`` (with its own nonces and HTTP session) per running order. Polling is
ours, on the event loop, with short intervals that honour ``Retry-After``: the library's
``poll_and_finalize`` sleeps a fixed second per round, which costs seconds per certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import requests
from acme import client as acme_client
from acme import crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from josepy.json_util import field as jose_field
from josepy.jwa import RS256, JWASignature
from josepy.jwk import JWK

from acmems.account import AccountFiles, generate_key, jwk_and_alg
from acmems.acme_problems import CA_DOWN_RETRY_AFTER, authorization_failure, ca_error, format_chain, retry_after_seconds
from acmems.challenges import ChallengeSolver
from acmems.errors import AcmemsError, CaError, ConfigError
from acmems.settings import AccountSettings

__all__ = ["AcmeCa", "ca_error", "create_account", "format_chain", "new_registration"]

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "acmems"
_NETWORK_TIMEOUT = 30
_BAD_NONCE_RETRIES = 10
_POLL_FIRST = 0.02
_POLL_MAX = 1.0


class _NewOrder(messages.NewOrder):
    """newOrder with ``replaces`` (RFC 9773 §5): the ARI identifier of the certificate this order
    renews. certbot's ``acme`` NewOrder (5.x) lacks the field, so we extend it here."""

    replaces: str | None = jose_field("replaces", omitempty=True)


class _Network(acme_client.ClientNetwork):
    """``ClientNetwork`` that keeps the last response (for ``Retry-After`` on errors, which the
    library's ``messages.Error`` drops) and retries ``badNonce`` more than the library's once
    (RFC 8555 §6.5 allows any number of retries with a fresh nonce)."""

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for _ in range(_BAD_NONCE_RETRIES):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce":
                    raise
                log.debug("badNonce from the CA; retrying with a fresh nonce")
        return self._post_once(*args, **kwargs)


def new_registration(
    key: JWK,
    directory: messages.Directory,
    emails: tuple[str, ...],
    agree: bool,
    eab_kid: str | None,
    eab_hmac_key: str | None,
) -> messages.NewRegistration:
    """The newAccount request (RFC 8555 §7.3), with External Account Binding (§7.3.4) if given."""
    eab = None
    if eab_kid is not None and eab_hmac_key is not None:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=eab_kid, hmac_key=eab_hmac_key, directory=directory
        )
    return messages.NewRegistration.from_data(
        email=",".join(emails) if emails else None,
        terms_of_service_agreed=agree or None,
        external_account_binding=eab,
    )


def create_account(client: acme_client.ClientV2, request: messages.NewRegistration) -> messages.RegistrationResource:
    """newAccount (RFC 8555 §7.3); a key that is already registered gets its existing account (§7.3.1)."""
    try:
        return client.new_account(request)
    except acme_errors.ConflictError as conflict:
        return client.query_registration(messages.RegistrationResource(uri=str(conflict), body=messages.Registration()))


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

    # ---------------------------------------------------------------- set-up (also used by the CLI)

    def network(self, key: JWK, alg: JWASignature, account: messages.RegistrationResource | None = None) -> _Network:
        """A fresh HTTP session to the CA that trusts ``ca-bundle`` (or the system's CAs)."""
        verify: bool | str = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        # requests takes a CA-bundle path where the library's signature says bool.
        if verify is True:
            # What requests would read from the environment at every request (below, it no longer does).
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        net = _Network(
            key=key,
            account=account,
            alg=alg,
            verify_ssl=cast(bool, verify),
            user_agent=USER_AGENT,
            timeout=_NETWORK_TIMEOUT,
        )
        # requests looks up proxy variables, .netrc and CA-bundle variables on every request (~0.1 ms
        # each, ~10 per order): resolve the proxies for the CA once here instead.
        net.session.proxies.update(requests.utils.get_environ_proxies(self.settings.acme_server))
        net.session.trust_env = False
        return net

    def fetch_directory(self, net: _Network) -> messages.Directory:
        """GET the directory (RFC 8555 §7.1.1)."""
        return acme_client.ClientV2.get_directory(self.settings.acme_server, net)

    def load_or_create_key(self, *, create: bool) -> None:
        """Load ``account.pem``; with ``create``, generate and save it (0600) if it is missing."""
        self.files.remove_stale_temp_files()
        if not self.files.has_key() and create:
            # EC P-256: every ACME request is signed with this key, and an ECDSA signature costs
            # ~0.05 ms where RSA-4096 costs ~4 ms of CPU (eight or more per certificate).
            self.files.save_key(generate_key("ec", 256))
            log.info("generated a new account key at %s", self.files.key_path)
        self._key, self._alg = jwk_and_alg(self.files.load_key())

    def register_sync(self) -> messages.RegistrationResource:
        """Create (or find) the account for our key; the server's automatic registration at start."""
        assert self._key is not None
        net = self.network(self._key, self._alg)
        directory = self.fetch_directory(net)
        tos = directory.meta.terms_of_service
        if tos is not None and not self.settings.accepts_terms(tos):
            raise ConfigError(
                f"the CA's terms of service ({tos}) are not accepted; set [account] "
                f"accept-terms-of-service = {tos} (or yes), or run acme-register"
            )
        if directory.meta.external_account_required and self.settings.eab_kid is None:
            raise ConfigError("the CA requires External Account Binding: set [account] eab-kid and eab-hmac-key")
        client = acme_client.ClientV2(directory, net)
        request = new_registration(
            self._key,
            directory,
            self.settings.emails,
            tos is not None,
            self.settings.eab_kid,
            self.settings.eab_hmac_key,
        )
        regr = create_account(client, request)
        self.files.save_registration(regr)
        return regr

    async def start(self) -> None:
        """Check the account at start: a key must exist, or we may create it (ToS accepted).

        Registration itself happens on first use (or now, if the CA answers), so a CA that is down
        at start does not keep acmems from serving its cache.
        """
        create = bool(self.settings.accept_terms_of_service) and any(
            v != "no" for v in self.settings.accept_terms_of_service
        )
        if not self.files.has_key() and not create:
            raise ConfigError(
                f"no account key at {self.files.key_path}: run 'acme-register --gen-key --register "
                "--accept-terms-of-service CONFIG' first, or set [account] accept-terms-of-service = yes"
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, functools.partial(self.load_or_create_key, create=create))
        try:
            await self._ensure_ready()
        except CaError as exc:
            log.warning(
                "the ACME CA is not reachable at start (%s); will retry on the first request",
                exc.log_detail or exc.message,
            )

    async def start_ready(self) -> None:
        """Make sure the directory and account are loaded (raises the CA's errors)."""
        await self._ensure_ready()

    async def _ensure_ready(self) -> None:
        async with self._ready_lock:
            if self._directory is not None and self._regr is not None:
                return
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._prepare_sync)
            except BaseException as exc:
                raise ca_error(exc, self.settings.acme_server) from exc

    def _prepare_sync(self) -> None:
        assert self._key is not None
        regr = self.files.load_registration()
        if regr is None:
            if not self.settings.accept_terms_of_service:
                raise ConfigError(f"no registration at {self.files.registration_path}; run acme-register")
            regr = self.register_sync()
            log.info(
                "registered a new ACME account at %s: %s (no registration.json was found and "
                "accept-terms-of-service allows it)",
                self.settings.acme_server,
                regr.uri,
            )
        net = self.network(self._key, self._alg, regr)
        self._directory = self.fetch_directory(net)
        self._regr = regr
        self._idle.append(acme_client.ClientV2(self._directory, net))

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

    def _check_profile(self, profile: str | None) -> None:
        if profile is not None:
            try:
                self.check_profiles({profile})
            except ConfigError as exc:
                raise CaError(exc.message, status=502) from None

    async def renewal_info(self, chain: bytes) -> tuple[datetime.datetime | None, float]:
        """RFC 9773: a point chosen at random in the CA's suggested renewal window (None without
        ARI) and when to ask again (Unix time, from the CA's Retry-After)."""
        await self._ensure_ready()
        client = self._take_client()
        try:
            when, next_check = await self._call(client, client.renewal_time, chain)
        finally:
            self._idle.append(client)
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when, next_check.timestamp()

    def revoke_sync(self, certificate: x509.Certificate, reason: int) -> None:
        """Revoke with the account key (RFC 8555 §7.6)."""
        self._prepare_sync()
        assert self._directory is not None
        client = self._take_client()
        client.revoke(certificate, reason)

    def close(self) -> None:
        """Stop the worker threads (running calls finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------ orders

    async def _call(self, client: acme_client.ClientV2, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            net = cast(_Network, client.net)
            raise ca_error(exc, self.settings.acme_server, net.last_response) from exc

    def _take_client(self) -> acme_client.ClientV2:
        if self._idle:
            return self._idle.pop()
        assert self._key is not None and self._directory is not None
        return acme_client.ClientV2(self._directory, self.network(self._key, self._alg, self._regr))

    async def issue(
        self, csr_pem: bytes, solver: ChallengeSolver, profile: str | None = None, replaces: str | None = None
    ) -> bytes:
        """Run one order for ``csr_pem`` to the end and return leaf + chain (PEM).

        Raises:
            CaError: 421 validation failed, 429 rate-limited, 502 the CA refused, 503 unreachable.
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

    def _may_register(self) -> bool:
        return any(v != "no" for v in self.settings.accept_terms_of_service)

    async def _reregister(self) -> None:
        async with self._ready_lock:
            self._idle.clear()
            self._directory = None
            self._regr = None
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._reregister_sync)
            except BaseException as exc:
                raise ca_error(exc, self.settings.acme_server) from exc

    def _reregister_sync(self) -> None:
        regr = self.register_sync()
        log.info("registered the ACME account again: %s", regr.uri)
        self._prepare_sync()

    async def _issue_once(
        self, csr_pem: bytes, solver: ChallengeSolver, profile: str | None, replaces: str | None
    ) -> bytes:
        await self._ensure_ready()
        self._check_profile(profile)
        async with self._slots:
            client = self._take_client()
            reuse = True
            try:
                return await asyncio.wait_for(
                    self._order(client, csr_pem, solver, profile, replaces), self.order_timeout
                )
            except TimeoutError:
                reuse = False
                raise CaError(
                    "the CA did not finish the order in time; retry later", status=503, retry_after=CA_DOWN_RETRY_AFTER
                ) from None
            except CaError as exc:
                if exc.status == 503:
                    # The CA may have restarted: drop pooled sessions (their nonces and connections).
                    self._idle.clear()
                    reuse = False
                raise
            finally:
                cast(_Network, client.net).last_response = None
                # Only sessions of the current registration go back to the pool.
                if reuse and client.net.account is self._regr:
                    self._idle.append(client)

    def _new_order(
        self, client: acme_client.ClientV2, csr_pem: bytes, profile: str | None, replaces: str | None
    ) -> messages.OrderResource:
        """newOrder (RFC 8555 §7.4) with ``profile`` and ``replaces``, then its authorizations."""
        csr = x509.load_pem_x509_csr(csr_pem)
        dns_names, ip_addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names]
        identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(a)) for a in ip_addresses]
        order = _NewOrder(identifiers=identifiers, profile=profile, replaces=replaces)
        response = client._post(client.directory["newOrder"], order)
        body = messages.Order.from_json(response.json())
        authorizations = [
            client._authzr_from_response(client._post_as_get(url), uri=url) for url in body.authorizations
        ]
        return messages.OrderResource(
            body=body, uri=response.headers.get("Location"), authorizations=authorizations, csr_pem=csr_pem
        )

    async def _order(
        self,
        client: acme_client.ClientV2,
        csr_pem: bytes,
        solver: ChallengeSolver,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> bytes:
        assert self._key is not None
        orderr = await self._call(client, self._new_order, client, csr_pem, profile, replaces)
        published: list[tuple[str, str, str]] = []
        try:
            pending = []
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # already valid (authorization reuse): nothing to prove
                challb = _find_challenge(authzr, solver)
                response, validation = challb.response_and_validation(self._key)
                identifier = authzr.body.identifier.value
                await solver.present(identifier, challb.chall.encode("token"), validation)
                published.append((identifier, challb.chall.encode("token"), validation))
                pending.append((authzr, challb, response))
            for _authzr, challb, response in pending:
                await self._call(client, client.answer_challenge, challb, response)
            await asyncio.gather(*(self._poll_authorization(client, a) for a, _c, _r in pending))
        finally:
            for identifier, token, validation in published:
                try:
                    await solver.cleanup(identifier, token, validation)
                except AcmemsError as exc:
                    log.warning(
                        "cleanup of the %s challenge for %s failed: %s", solver.challenge_type, identifier, exc.message
                    )
        return await self._finalize(client, orderr)

    async def _poll_authorization(self, client: acme_client.ClientV2, authzr: messages.AuthorizationResource) -> None:
        delay = _POLL_FIRST
        while True:
            authzr, response = await self._call(client, client.poll, authzr)
            status = authzr.body.status
            if status == messages.STATUS_VALID:
                return
            if status != messages.STATUS_PENDING:
                raise authorization_failure(authzr)
            await asyncio.sleep(retry_after_seconds(response) or delay)
            delay = min(delay * 2, _POLL_MAX)

    async def _finalize(self, client: acme_client.ClientV2, orderr: messages.OrderResource) -> bytes:
        try:
            orderr = await self._call(client, client.begin_finalization, orderr)
        except CaError as exc:
            if exc.problem_type != "orderNotReady":
                raise
        else:
            # The finalize answer (RFC 8555 §7.4) may already be the valid order: then skip a poll.
            if orderr.body.status == messages.STATUS_VALID and orderr.body.certificate is not None:
                certificate = await self._call(client, client._post_as_get, orderr.body.certificate)
                return format_chain(certificate.text)
        delay = _POLL_FIRST
        while True:
            response = await self._call(client, client._post_as_get, orderr.uri)
            body = messages.Order.from_json(response.json())
            if body.status == messages.STATUS_VALID and body.certificate is not None:
                certificate = await self._call(client, client._post_as_get, body.certificate)
                return format_chain(certificate.text)
            if body.status == messages.STATUS_INVALID:
                error = body.error
                detail = f"{error.code or error.typ}: {error.detail}" if error else "no reason given"
                raise CaError(
                    f"the CA refused to issue: {detail}", status=502, problem_type=error.code if error else None
                )
            if body.status == messages.STATUS_READY:
                orderr = await self._call(client, client.begin_finalization, orderr)
            await asyncio.sleep(retry_after_seconds(response) or delay)
            delay = min(delay * 2, _POLL_MAX)


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
        status=421,
    )
