"""A renewal's `replaces` never keeps a certificate from being renewed (acmems.ca.order)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from acmems.ca.order import OrderRun
from acmems.errors import CaError, Kind


def _run(refusal: CaError) -> tuple[list[str | None], Callable[[], Any]]:
    sent: list[str | None] = []

    async def blocking(
        fn: object, client: object, csr: bytes, profile: str | None, replaces: str | None, **_: object
    ) -> str:
        sent.append(replaces)
        if replaces is not None:
            raise refusal
        return "the order"

    # a stand-in for the CA client's thread pool: only newOrder is called
    run = OrderRun(cast(Any, blocking), cast(Any, SimpleNamespace(net=None)), cast(Any, None), cast(Any, None))
    return sent, lambda: asyncio.run(run._new_order(b"csr", None, "aki.serial"))


@pytest.mark.parametrize("problem", ["alreadyReplaced", "serverInternal"])
def test_an_order_the_ca_refuses_for_its_replaces_is_sent_again_without_it(problem: str) -> None:
    sent, new_order = _run(CaError("refused", kind=Kind.CA_REFUSED, problem_type=problem))
    assert new_order() == "the order"
    assert sent == ["aki.serial", None]


def test_other_refusals_are_not_sent_again() -> None:
    sent, new_order = _run(CaError("no", kind=Kind.CA_REFUSED, problem_type="rejectedIdentifier"))
    with pytest.raises(CaError, match="no"):
        new_order()
    assert sent == ["aki.serial"]
