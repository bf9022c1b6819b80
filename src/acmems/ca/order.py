"""One ACME order carried out: the IO side of :mod:`acmems.core.order_steps`.

:class:`OrderRun` asks :func:`order_steps.next_step` what to do, does it (publish and answer
challenges, poll, finalize, download) with the ``acme`` library in the CA client's worker threads, and
folds the CA's answers back into the state. What it published is removed once validation is over,
whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from acme import challenges, messages
from acme import client as acme_client
from josepy.jwk import JWK

from acmems.ca import adapter as acme_adapter
from acmems.ca.adapter import CaNetwork
from acmems.ca.problems import format_chain, problem_of, retry_after_seconds
from acmems.challenges import ChallengeSolver
from acmems.challenges.dns_persist import persist_record
from acmems.core import order_steps as steps
from acmems.errors import AcmemsError, CaError, Kind, LeaseLost

__all__ = ["BlockingCall", "OrderRecord", "OrderRun"]

log = logging.getLogger("acmems.acme_ca")
T = TypeVar("T")
_Work = steps.AnswerChallenges | steps.PollAuthorizations | steps.Finalize | steps.PollOrder


class BlockingCall(Protocol):
    """Runs a synchronous ``acme`` call off the event loop; its failures become :class:`CaError`."""

    async def __call__(self, fn: Callable[..., T], *args: Any, net: CaNetwork | None = None) -> T: ...


class OrderRecord(Protocol):
    """Where an order's URL is kept while it runs (a cluster lease), so that another instance can
    resume it if this one dies: ``saved_order`` is an earlier holder's."""

    saved_order: str | None
    lost: bool  # another instance took the order over (or may have): drive it no further

    async def save_order(self, url: str) -> None:
        """Keep ``url``; raises if this instance may no longer carry the order on."""
        ...


# The CA's answers to a newOrder whose `replaces` it will not take (RFC 9773 §5; Pebble answers
# serverInternal when it cannot find the replaced certificate).
_REPLACES_REFUSED = frozenset({"alreadyReplaced", "serverInternal"})


def stop_if_lost(record: OrderRecord | None) -> None:
    """Raise :class:`LeaseLost` when the order is no longer this instance's to drive."""
    if record is not None and record.lost:
        raise LeaseLost(
            "this acmems lost the order's lease (another instance carries it on); post the CSR again to get its result"
        )


class OrderRun:
    """One order from newOrder to the chain.

    Args:
        blocking: how to run a synchronous ``acme`` call (the CA client's thread pool).
        client: the ``ClientV2`` this order uses (its own nonces and HTTP session).
        key: the account key (for key authorizations).
        solver: publishes what the CA checks.
        ca: the CA's directory URL (for messages).
    """

    def __init__(
        self, blocking: BlockingCall, client: acme_client.ClientV2, key: JWK, solver: ChallengeSolver, ca: str = ""
    ):
        self.blocking = blocking
        self.ca = ca  # the directory URL, named when the CA offers no challenge of the solver's type
        self.client = client
        self.net = cast(CaNetwork, client.net)
        self.key = key
        self.solver = solver
        self.orderr: messages.OrderResource | None = None
        self.authorizations: list[messages.AuthorizationResource] = []
        self.published: list[tuple[str, str, str]] = []  # identifier, token, validation
        self.record: OrderRecord | None = None

    async def run(
        self, csr_pem: bytes, profile: str | None, replaces: str | None, record: OrderRecord | None = None
    ) -> bytes:
        """newOrder (or the order ``record`` saved), then the steps until the chain is downloaded
        (returned) or the order fails (raised). A new order's URL is saved in ``record`` before any
        challenge is answered. When ``record`` is lost, no further CA call is made and nothing
        published is removed (the successor relies on the same values)."""
        self.record = record
        if record is not None and record.saved_order is not None:
            self.orderr = await self._resume(record.saved_order, csr_pem)
        if self.orderr is None:
            self.orderr = await self._new_order(csr_pem, profile, replaces)
            if record is not None and self.orderr.uri is not None:
                await record.save_order(self.orderr.uri)
        self.authorizations = list(self.orderr.authorizations)
        state = order_state(self.orderr.body, self.authorizations)
        try:
            while True:
                stop_if_lost(record)
                step = steps.next_step(state)
                if self.published and not isinstance(step, steps.AnswerChallenges | steps.PollAuthorizations):
                    await self.clean_up()  # validation is over: remove before finalizing
                if isinstance(step, steps.Download):
                    response = await self.blocking(acme_adapter.post_as_get, self.client, step.url, net=self.net)
                    return format_chain(response.text)
                if isinstance(step, steps.Fail):
                    raise step.error
                state = await self._carry_out(step, state)
        finally:
            await self.clean_up()

    async def _new_order(self, csr_pem: bytes, profile: str | None, replaces: str | None) -> messages.OrderResource:
        """newOrder; when the CA refuses it because of ``replaces`` (already replaced, or it cannot
        find the certificate named: Pebble cannot when the serial's DER has a leading zero byte),
        once more without it. ARI's ``replaces`` only asks for the CA's rate-limit exemption: it must
        never keep a certificate from being renewed."""
        try:
            return await self.blocking(acme_adapter.new_order, self.client, csr_pem, profile, replaces, net=self.net)
        except CaError as exc:
            if replaces is None or exc.problem_type not in _REPLACES_REFUSED:
                raise
            log.warning(
                "the CA refused the order that replaces %s (%s); ordering it without replaces", replaces, exc.message
            )
        return await self.blocking(acme_adapter.new_order, self.client, csr_pem, profile, None, net=self.net)

    async def _resume(self, url: str, csr_pem: bytes) -> messages.OrderResource | None:
        """The saved order, if the CA still has it and it can still succeed; None: order anew."""
        try:
            orderr = await self.blocking(acme_adapter.resume_order, self.client, url, csr_pem, net=self.net)
        except CaError as exc:
            log.info("the saved order %s cannot be resumed (%s); ordering anew", url, exc.message)
            return None
        if orderr.body.status == messages.STATUS_INVALID:
            log.info("the saved order %s has failed; ordering anew", url)
            return None
        log.info("resuming the saved order %s (%s)", url, _status(orderr.body.status))
        return orderr

    async def _carry_out(self, step: _Work, state: steps.OrderState) -> steps.OrderState:
        if isinstance(step, steps.AnswerChallenges):
            await self._answer([self.authorizations[i] for i in step.authorizations])
            return steps.after_answer(state)
        if isinstance(step, steps.Finalize):
            return await self._finalize(state)
        await asyncio.sleep(step.delay)
        stop_if_lost(self.record)
        if isinstance(step, steps.PollAuthorizations):
            return await self._poll_authorizations(step.authorizations, state)
        return await self._poll_order(state)

    async def _answer(self, authorizations: list[messages.AuthorizationResource]) -> None:
        """Publish every validation first, then tell the CA (it may check one while we publish the next)."""
        answers = []
        for authzr in authorizations:
            challb = _find_challenge(authzr, self.solver, self.ca)
            if isinstance(challb.chall, challenges.UnrecognizedChallenge):  # dns-persist-01
                response, identifier, token, validation = self._persist_answer(authzr, challb.chall)
            else:
                response, validation = challb.response_and_validation(self.key)
                identifier, token = authzr.body.identifier.value, challb.chall.encode("token")
            await self.solver.present(identifier, token, validation)
            self.published.append((identifier, token, validation))
            if challb.status == messages.STATUS_PENDING:  # a resumed order's may be processing already
                answers.append((challb, response))
        for challb, response in answers:
            await self.blocking(acme_adapter.answer_challenge, self.client, challb, response, net=self.net)

    def _persist_answer(
        self, authzr: messages.AuthorizationResource, chall: challenges.UnrecognizedChallenge
    ) -> tuple[challenges.ChallengeResponse, str, str, str]:
        """dns-persist-01: the answer is ``{}``; the solver gets the record the CA looks for (with the
        first issuer domain name the CA names) and every issuer name (as the token)."""
        issuers = tuple(str(i) for i in chall.jobj.get("issuer-domain-names") or ())
        account = self.net.account
        if not issuers or account is None or not account.uri:
            raise CaError(
                f"the CA {self.ca}'s dns-persist-01 challenge for {authzr.body.identifier.value} names no "
                "issuer domain (issuer-domain-names)",
                kind=Kind.CA_REFUSED,
            )
        identifier = authzr.body.identifier.value
        if authzr.body.wildcard:
            identifier = f"*.{identifier}"
        record = persist_record(issuers[0], account.uri, wildcard=bool(authzr.body.wildcard))
        return _EmptyResponse(), identifier, ",".join(issuers), record

    async def _poll_authorizations(self, which: tuple[int, ...], state: steps.OrderState) -> steps.OrderState:
        polled = await asyncio.gather(
            *(self.blocking(self.client.poll, self.authorizations[i], net=self.net) for i in which)
        )
        for i, (authzr, _response) in zip(which, polled, strict=True):
            self.authorizations[i] = authzr
        updated = {i: authorization_state(self.authorizations[i]) for i in which}
        retry_after = [r for _a, response in polled if (r := retry_after_seconds(response)) is not None]
        return steps.after_authorizations(state, updated, max(retry_after) if retry_after else None)

    async def _finalize(self, state: steps.OrderState) -> steps.OrderState:
        assert self.orderr is not None
        try:
            self.orderr = await self.blocking(self.client.begin_finalization, self.orderr, net=self.net)
        except CaError as exc:
            if exc.problem_type != "orderNotReady":
                raise
            return steps.after_not_ready(state)
        body = self.orderr.body
        return steps.after_finalize(state, _status(body.status), body.certificate, problem_of(body.error))

    async def _poll_order(self, state: steps.OrderState) -> steps.OrderState:
        assert self.orderr is not None
        body, response = await self.blocking(acme_adapter.fetch_order, self.client, self.orderr.uri, net=self.net)
        self.orderr = self.orderr.update(body=body)
        return steps.after_order(
            state, _status(body.status), body.certificate, problem_of(body.error), retry_after_seconds(response)
        )

    async def clean_up(self) -> None:
        """Remove what was published (a failure is logged: the DNS solver retries it later); nothing
        once the lease is lost: the values are the successor's now."""
        if self.record is not None and self.record.lost:
            if self.published:
                log.warning(
                    "lost the lease of the order for %s: leaving its %d challenge value(s) to the instance "
                    "that carries it on",
                    ", ".join(identifier for identifier, _, _ in self.published),
                    len(self.published),
                )
            self.published.clear()
            return
        while self.published:
            identifier, token, validation = self.published.pop()
            try:
                await self.solver.cleanup(identifier, token, validation)
            except AcmemsError as exc:
                log.warning(
                    "cleanup of the %s challenge for %s failed: %s", self.solver.challenge_type, identifier, exc.message
                )


def _status(status: messages.Status) -> str:
    return str(status.name)


def order_state(body: messages.Order, authorizations: list[messages.AuthorizationResource]) -> steps.OrderState:
    """The state machine's view of an order the CA sent."""
    return steps.OrderState(
        status=_status(body.status),
        authorizations=tuple(authorization_state(a) for a in authorizations),
        certificate=body.certificate,
        problem=problem_of(body.error),
    )


def authorization_state(authzr: messages.AuthorizationResource) -> steps.AuthorizationState:
    """The state machine's view of an authorization: ``*.name`` for a wildcard, the first challenge error."""
    body = authzr.body
    name = f"*.{body.identifier.value}" if body.wildcard else body.identifier.value
    problem = next((problem_of(c.error) for c in body.challenges if c.error is not None), None)
    return steps.AuthorizationState(name, _status(body.status), problem)


class _EmptyResponse(challenges.ChallengeResponse):
    """The answer to a challenge that takes no payload (``{}``), such as dns-persist-01."""

    typ = "dns-persist-01"

    def __bool__(self) -> bool:
        # An object without fields is falsy, and ``acme`` would then send an empty payload
        # (a POST-as-GET, which only reads the challenge) instead of ``{}``.
        return True


def challenge_type(chall: challenges.Challenge) -> str:
    """The challenge's type as the CA names it (also for types the ``acme`` library does not know)."""
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", "?"))
    return str(chall.typ)


def _find_challenge(authzr: messages.AuthorizationResource, solver: ChallengeSolver, ca: str) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if challenge_type(challb.chall) == solver.challenge_type:
            return challb
    offered = ", ".join(challenge_type(c.chall) for c in authzr.body.challenges) or "none"
    name = authzr.body.identifier.value
    if authzr.body.wildcard:
        name = f"*.{name}"
    raise CaError(
        f"the CA {ca or '(unnamed)'} offers no {solver.challenge_type} challenge for {name} (offered: {offered}); "
        f"use a verification of another type for it",
        kind=Kind.CA_REFUSED,
    )
