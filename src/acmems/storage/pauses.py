"""The CA's ``rateLimited`` pauses, each scoped to what the CA refused
(:mod:`acmems.core.pause_scope`): an order is held only by a pause of its account, of its exact set
of names, of one of its registered domains or of one of its names.

Every acmems keeps its own in memory (:class:`MemoryPauses`); :class:`CaPauses` is also where they
are shared beyond it: nowhere for one acmems (:class:`NoSharedPauses`), the cluster database for a
cluster (:class:`acmems.cluster.backoff.SharedBackoff`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from acmems.core.pause_scope import PauseScope
from acmems.errors import CaError, Kind

__all__ = ["CaPauses", "MemoryPauses", "NoSharedPauses", "paused"]

_PRUNE_AT = 10_000  # pauses noted: then the lapsed ones are dropped


class CaPauses(Protocol):
    """Per account (its ``acme-server``) and scope."""

    async def check(self, account: str, scopes: Sequence[PauseScope]) -> None:
        """Raise a 429 :class:`acmems.errors.CaError` (:func:`paused`) while a pause of ``account``
        in any of ``scopes`` lasts."""
        ...

    async def hold(self, account: str, scope: PauseScope, seconds: int, reason: str) -> None:
        """Note the CA's pause of ``scope`` for ``seconds`` (a longer one already noted stays)."""
        ...


def paused(scope: PauseScope, reason: str, until: float) -> CaError:
    """The 429 of an order held by a pause: what is paused, why, and until when."""
    waiting = max(1, math.ceil(until - time.time()))
    when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return CaError(
        f"the CA paused {scope.describe()} ({reason}); no order for it is sent before {when} ({waiting} s)",
        kind=Kind.RATE_LIMITED,
        retry_after=waiting,
        problem_type="rateLimited",  # the CA's own word, kept: another CA may be tried
        held=True,
    )


class MemoryPauses:
    """This process's pauses: ``(account, scope) -> (until, reason)``, Unix times. Lapsed ones are
    dropped as they are met."""

    def __init__(self) -> None:
        self._pauses: dict[tuple[str, PauseScope], tuple[float, str]] = {}

    async def check(self, account: str, scopes: Sequence[PauseScope]) -> None:
        """Raise the longest pause that holds an order in ``scopes``."""
        now = time.time()
        found: tuple[float, str, PauseScope] | None = None
        for scope in scopes:
            noted = self._pauses.get((account, scope))
            if noted is None:
                continue
            until, reason = noted
            if until <= now:
                del self._pauses[(account, scope)]
            elif found is None or until > found[0]:
                found = (until, reason, scope)
        if found is not None:
            raise paused(found[2], found[1], found[0])

    async def hold(self, account: str, scope: PauseScope, seconds: int, reason: str) -> None:
        """Note a pause (a longer one already noted stays)."""
        now = time.time()
        if len(self._pauses) >= _PRUNE_AT:
            self._pauses = {key: noted for key, noted in self._pauses.items() if noted[0] > now}
        until = now + seconds
        noted = self._pauses.get((account, scope))
        if noted is None or noted[0] < until:
            self._pauses[(account, scope)] = (until, reason)


class NoSharedPauses:
    """One acmems: its :class:`MemoryPauses` are all there is; nobody to share them with."""

    async def check(self, account: str, scopes: Sequence[PauseScope]) -> None:
        """Never paused here."""

    async def hold(self, account: str, scope: PauseScope, seconds: int, reason: str) -> None:
        """Nothing to note."""
