"""The one retry schedule: a first wait, doubling after each failure, up to a cap. Pure."""

from __future__ import annotations

__all__ = ["capped_backoff"]

_MAX_DOUBLINGS = 1000  # 2.0 ** 1024 overflows; any cap is reached long before


def capped_backoff(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait before try ``attempt + 1`` after ``attempt`` failed ones: ``first`` for the
    first (and for ``attempt < 1``), then doubling, never more than ``cap``."""
    doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
    return float(min(cap, first * 2.0**doublings))
