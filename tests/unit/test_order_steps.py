"""The ACME order state machine (RFC 8555 §7.1.6), without any network: every order and
authorization status, Retry-After, authorizations already valid, orderNotReady, and the badNonce retry."""

from __future__ import annotations

import dataclasses

import pytest
from acme import messages

from acmems.ca.adapter import BAD_NONCE_RETRIES, retrying_bad_nonce
from acmems.core import order_steps as steps
from acmems.core.order_steps import AuthorizationState, OrderState, Problem
from acmems.errors import Kind

PENDING = AuthorizationState("www.example.org", "pending")
VALID = AuthorizationState("example.org", "valid")


def order(status: str, *authorizations: AuthorizationState, **fields: object) -> OrderState:
    return dataclasses.replace(OrderState(status, authorizations), **fields)  # type: ignore[arg-type]


def test_a_new_order_answers_only_the_pending_authorizations() -> None:
    assert steps.next_step(order("pending", VALID, PENDING, PENDING)) == steps.AnswerChallenges((1, 2))


def test_answered_authorizations_are_polled_at_once_then_with_a_doubling_delay() -> None:
    state = steps.after_answer(order("pending", PENDING))
    assert steps.next_step(state) == steps.PollAuthorizations((0,), 0.0)
    delays = []
    for _ in range(8):
        state = steps.after_authorizations(state, {0: PENDING}, None)
        step = steps.next_step(state)
        assert isinstance(step, steps.PollAuthorizations)
        delays.append(step.delay)
    assert delays == [0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]


def test_retry_after_of_the_ca_sets_the_delay() -> None:
    state = steps.after_authorizations(steps.after_answer(order("pending", PENDING)), {0: PENDING}, 3.0)
    assert steps.next_step(state) == steps.PollAuthorizations((0,), 3.0)
    state = steps.after_order(order("processing", VALID, finalize="sent"), "processing", None, None, 7.0)
    assert steps.next_step(state) == steps.PollOrder(7.0)


def test_all_authorizations_valid_means_finalize_even_before_the_ca_says_ready() -> None:
    assert steps.next_step(order("pending", VALID, VALID)) == steps.Finalize()
    assert steps.next_step(order("ready", VALID)) == steps.Finalize()


def test_order_not_ready_polls_the_order_then_finalizes_once_ready() -> None:
    state = steps.after_not_ready(order("pending", VALID))
    assert steps.next_step(state) == steps.PollOrder(0.0)
    state = steps.after_order(state, "pending", None, None, None)
    assert steps.next_step(state) == steps.PollOrder(0.02)
    assert steps.next_step(steps.after_order(state, "ready", None, None, None)) == steps.Finalize()


@pytest.mark.parametrize("status", ["processing", "ready"])
def test_a_finalized_order_is_polled_until_valid(status: str) -> None:
    state = steps.after_finalize(order("ready", VALID), status, None, None)
    assert steps.next_step(state) == steps.PollOrder(0.0)


def test_a_valid_order_is_downloaded_and_one_without_its_url_polled() -> None:
    url = "https://ca.example/cert/1"
    assert steps.next_step(order("valid", VALID, certificate=url, finalize="sent")) == steps.Download(url)
    assert steps.next_step(order("valid", VALID, finalize="sent")) == steps.PollOrder(0.0)


@pytest.mark.parametrize("status", ["invalid", "deactivated", "expired", "revoked"])
def test_a_failed_authorization_fails_the_order_with_the_cas_problem(status: str) -> None:
    problem = Problem("unauthorized", "no TXT record found")
    step = steps.next_step(order("pending", VALID, AuthorizationState("*.example.org", status, problem)))
    assert isinstance(step, steps.Fail)
    assert step.error.kind is Kind.VALIDATION_FAILED and step.error.status == 421
    assert step.error.problem_type == "unauthorized"
    assert step.error.message == "the CA could not validate *.example.org: unauthorized: no TXT record found"
    bare = steps.next_step(order("invalid", AuthorizationState("example.org", status)))
    assert isinstance(bare, steps.Fail) and f"authorization is {status}" in bare.error.message


def test_an_invalid_order_fails_with_its_error() -> None:
    step = steps.next_step(order("invalid", VALID, problem=Problem("badCSR", "key too small"), finalize="sent"))
    assert isinstance(step, steps.Fail)
    assert (step.error.status, step.error.problem_type) == (502, "badCSR")
    assert step.error.message == "the CA refused to issue: badCSR: key too small"
    silent = steps.next_step(order("invalid", VALID))
    assert isinstance(silent, steps.Fail) and "no reason given" in silent.error.message


@pytest.mark.parametrize(
    ("state", "what"),
    [(order("archived", VALID), "order"), (order("pending", AuthorizationState("x.example", "odd")), "authorization")],
)
def test_a_status_rfc_8555_does_not_define_is_refused(state: OrderState, what: str) -> None:
    step = steps.next_step(state)
    assert isinstance(step, steps.Fail) and step.error.kind is Kind.CA_REFUSED
    assert f"sent an {what} in status" in step.error.message


def test_the_whole_happy_path_in_order() -> None:
    state = order("pending", VALID, PENDING)
    seen = [type(steps.next_step(state)).__name__]
    state = steps.after_answer(state)
    seen.append(type(steps.next_step(state)).__name__)
    state = steps.after_authorizations(state, {1: dataclasses.replace(PENDING, status="valid")}, None)
    seen.append(type(steps.next_step(state)).__name__)
    state = steps.after_finalize(state, "processing", None, None)
    seen.append(type(steps.next_step(state)).__name__)
    state = steps.after_order(state, "valid", "https://ca.example/cert/1", None, None)
    seen.append(type(steps.next_step(state)).__name__)
    assert seen == ["AnswerChallenges", "PollAuthorizations", "Finalize", "PollOrder", "Download"]


def test_bad_nonce_is_retried_with_a_fresh_nonce_up_to_the_limit() -> None:
    calls = []

    def send(failures: int) -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise messages.Error.with_code("badNonce", detail="stale")
        return "sent"

    assert retrying_bad_nonce(lambda: send(3)) == "sent" and len(calls) == 4
    calls.clear()
    with pytest.raises(messages.Error, match="badNonce"):
        retrying_bad_nonce(lambda: send(BAD_NONCE_RETRIES + 1))
    assert len(calls) == BAD_NONCE_RETRIES + 1


def test_other_problems_are_not_retried() -> None:
    calls = []

    def send() -> str:
        calls.append(1)
        raise messages.Error.with_code("rateLimited", detail="slow down")

    with pytest.raises(messages.Error, match="rateLimited"):
        retrying_bad_nonce(send)
    assert len(calls) == 1
