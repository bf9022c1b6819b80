"""The one retry schedule (acmems.core.backoff): doubling from the first wait, never past the cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acmems.core.backoff import capped_backoff


def test_the_schedule_doubles_from_the_first_wait_up_to_the_cap() -> None:
    assert [capped_backoff(n, 5.0, 60.0) for n in range(0, 7)] == [5.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


@given(
    st.integers(min_value=-10, max_value=10**9),
    st.floats(min_value=0.001, max_value=1e6),
    st.floats(min_value=0.001, max_value=1e6),
)
def test_every_wait_is_between_the_first_and_the_cap_and_never_shrinks(attempt: int, first: float, cap: float) -> None:
    wait = capped_backoff(attempt, first, cap)
    assert min(first, cap) <= wait <= cap
    assert capped_backoff(attempt + 1, first, cap) >= wait
