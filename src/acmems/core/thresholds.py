"""How long after what each notification condition begins: shares of a certificate's lifetime,
or fixed times (``[notify]``). Pure values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Span", "Thresholds", "parse_span"]


@dataclass(frozen=True, slots=True)
class Span:
    """A length of time: a share of a certificate's lifetime (``share``), or fixed seconds."""

    value: float
    share: bool = True

    def of(self, lifetime: timedelta) -> timedelta:
        return lifetime * self.value if self.share else timedelta(seconds=self.value)

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.share else f"{self.value:g}s"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``[notify]``: when each condition begins, and how often it is reminded."""

    overdue_grace: Span = Span(0.05)  # past the renewal point by this, still not renewed
    expiring_left: Span = Span(0.10)  # less than this of the lifetime left
    pickup_grace: Span = Span(0.05)  # a renewed certificate this old, not fetched by a client of the old one
    remind_every: Span = Span(0.10)


_SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_span(value: str) -> Span:
    """``5%`` (of the lifetime), ``0.05`` (the same), or a time: ``90s``, ``30m``, ``12h``, ``2d``."""
    match = _SPAN_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a share of the lifetime (5%, 0.05) or a time (30m, 12h, 2d)")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        return Span(number / 100)
    if unit is None:
        if number > 1:
            raise ValueError(f"{value!r}: a share is at most 1 (100%); for a time write a unit (s, m, h, d)")
        return Span(number)
    return Span(number * _UNITS[unit], share=False)
