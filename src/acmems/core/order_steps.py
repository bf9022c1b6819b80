"""An ACME order (RFC 8555 §7.1.6, §7.4, §7.5.1) as a pure state machine.

:class:`OrderState` is what is known of one order and its authorizations; :func:`next_step` says
what to do next (answer challenges, poll, finalize, download, or fail with the CA's problem) and the
``after_*`` functions fold what the CA answered into a new state. Nothing here talks to the CA,
sleeps or reads the clock: :mod:`acmems.ca.session` carries the steps out.

Statuses (§7.1.6): an order is ``pending``, ``ready``, ``processing``, ``valid`` or ``invalid``; an
authorization ``pending``, ``valid``, ``invalid``, ``deactivated``, ``expired`` or ``revoked``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from acmems.core.backoff import capped_backoff
from acmems.errors import CaError, Kind

__all__ = [
    "FAILED_AUTHORIZATION",
    "POLL_FIRST",
    "POLL_MAX",
    "AnswerChallenges",
    "AuthorizationState",
    "Download",
    "Fail",
    "Finalize",
    "OrderState",
    "PollAuthorizations",
    "PollOrder",
    "Problem",
    "Step",
    "after_answer",
    "after_authorizations",
    "after_finalize",
    "after_not_ready",
    "after_order",
    "next_step",
    "poll_delay",
]

POLL_FIRST = 0.02  # seconds before the second poll; doubling from there
POLL_MAX = 1.0
FAILED_AUTHORIZATION = frozenset({"invalid", "deactivated", "expired", "revoked"})
_ORDER_STATUSES = frozenset({"pending", "ready", "processing", "valid", "invalid"})
_AUTHORIZATION_STATUSES = FAILED_AUTHORIZATION | {"pending", "valid"}


@dataclass(frozen=True, slots=True)
class Problem:
    """The part of a problem document (RFC 8555 §6.7) the client is told: short type and detail."""

    type: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.type}: {self.detail}" if self.type else self.detail


@dataclass(frozen=True, slots=True)
class AuthorizationState:
    """One authorization: its identifier (``*.name`` for a wildcard), status and, if a challenge
    failed, the CA's problem."""

    identifier: str
    status: str
    problem: Problem | None = None


@dataclass(frozen=True, slots=True)
class OrderState:
    """What is known of an order.

    ``finalize`` is ``"not-sent"``, ``"not-ready"`` (the CA answered orderNotReady) or ``"sent"``;
    ``polls`` counts the polls of the current phase (for the back-off); ``retry_after`` is the CA's
    last ``Retry-After`` in seconds.
    """

    status: str
    authorizations: tuple[AuthorizationState, ...]
    certificate: str | None = None
    problem: Problem | None = None
    answered: bool = False
    finalize: str = "not-sent"
    polls: int = 0
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class AnswerChallenges:
    """Publish and answer a challenge for each of these authorizations (indices)."""

    authorizations: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PollAuthorizations:
    """Wait ``delay`` seconds, then fetch these authorizations again."""

    authorizations: tuple[int, ...]
    delay: float


@dataclass(frozen=True, slots=True)
class Finalize:
    """Send the CSR to the order's finalize URL (§7.4)."""


@dataclass(frozen=True, slots=True)
class PollOrder:
    """Wait ``delay`` seconds, then fetch the order again."""

    delay: float


@dataclass(frozen=True, slots=True)
class Download:
    """Fetch the certificate chain from ``url`` (§7.4.2)."""

    url: str


@dataclass(frozen=True, slots=True)
class Fail:
    """The order cannot succeed; answer the client with ``error``."""

    error: CaError


Step = AnswerChallenges | PollAuthorizations | Finalize | PollOrder | Download | Fail


def poll_delay(polls: int, retry_after: float | None) -> float:
    """How long to wait before a poll: none before the first of a phase, then the CA's
    ``Retry-After`` if it sent one, else :data:`POLL_FIRST` doubling up to :data:`POLL_MAX`."""
    if polls == 0:
        return 0.0
    if retry_after is not None:
        return retry_after
    return capped_backoff(polls, POLL_FIRST, POLL_MAX)


def next_step(state: OrderState) -> Step:
    """What to do next with the order ``state`` describes."""
    for authorization in state.authorizations:
        if authorization.status in FAILED_AUTHORIZATION:
            return Fail(_validation_failure(authorization))
        if authorization.status not in _AUTHORIZATION_STATUSES:
            return Fail(_odd_status("authorization", authorization.status))
    delay = poll_delay(state.polls, state.retry_after)
    if state.status == "invalid":
        return Fail(
            CaError(
                f"the CA refused to issue: {state.problem or 'no reason given'}",
                kind=Kind.CA_REFUSED,
                problem_type=state.problem.type if state.problem else None,
            )
        )
    if state.status == "valid":
        return Download(state.certificate) if state.certificate else PollOrder(delay)
    if state.status == "processing":
        return PollOrder(delay)
    if state.status == "ready":
        return PollOrder(delay) if state.finalize == "sent" else Finalize()
    if state.status == "pending":
        pending = tuple(i for i, a in enumerate(state.authorizations) if a.status == "pending")
        if pending:
            return PollAuthorizations(pending, delay) if state.answered else AnswerChallenges(pending)
        # Every authorization is valid: the order is ready, or about to be (§7.1.6).
        return Finalize() if state.finalize == "not-sent" else PollOrder(delay)
    return Fail(_odd_status("order", state.status))


def after_answer(state: OrderState) -> OrderState:
    """The challenges of the pending authorizations were answered: poll them from now on."""
    return dataclasses.replace(state, answered=True, polls=0, retry_after=None)


def after_authorizations(
    state: OrderState, updated: dict[int, AuthorizationState], retry_after: float | None
) -> OrderState:
    """Authorizations fetched again (by index)."""
    authorizations = tuple(updated.get(i, a) for i, a in enumerate(state.authorizations))
    return dataclasses.replace(state, authorizations=authorizations, polls=state.polls + 1, retry_after=retry_after)


def after_finalize(state: OrderState, status: str, certificate: str | None, problem: Problem | None) -> OrderState:
    """The CA took the finalize request; its answer is the order in its new status."""
    return dataclasses.replace(
        state, status=status, certificate=certificate, problem=problem, finalize="sent", polls=0, retry_after=None
    )


def after_not_ready(state: OrderState) -> OrderState:
    """The CA answered finalize with orderNotReady: poll the order until it is ready."""
    return dataclasses.replace(state, finalize="not-ready", polls=0, retry_after=None)


def after_order(
    state: OrderState, status: str, certificate: str | None, problem: Problem | None, retry_after: float | None
) -> OrderState:
    """The order fetched again; a new status starts a new phase of polling."""
    polls = state.polls + 1 if status == state.status else 1
    return dataclasses.replace(
        state, status=status, certificate=certificate, problem=problem, polls=polls, retry_after=retry_after
    )


def _validation_failure(authorization: AuthorizationState) -> CaError:
    name = authorization.identifier
    if authorization.problem is not None:
        return CaError(
            f"the CA could not validate {name}: {authorization.problem}",
            kind=Kind.VALIDATION_FAILED,
            problem_type=authorization.problem.type,
        )
    return CaError(
        f"the CA could not validate {name}: authorization is {authorization.status}", kind=Kind.VALIDATION_FAILED
    )


def _odd_status(what: str, status: str) -> CaError:
    valid = _ORDER_STATUSES if what == "order" else _AUTHORIZATION_STATUSES
    return CaError(
        f"the CA sent an {what} in status {status!r}, which RFC 8555 does not define "
        f"(expected one of {', '.join(sorted(valid))})",
        kind=Kind.CA_REFUSED,
    )
