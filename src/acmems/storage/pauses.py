"""The CA's ``rateLimited`` pauses as every process that orders from one account must see them.

Each :class:`acmems.ca.session.AcmeCa` keeps the pauses its own CA answered; :class:`CaPauses` is
where they are shared beyond it: nowhere for one acmems (:class:`NoSharedPauses`), the cluster
database for a cluster (:class:`acmems.cluster.backoff.SharedBackoff`).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CaPauses", "NoSharedPauses"]


class CaPauses(Protocol):
    """Per account (its ``acme-server``)."""

    async def check(self, account: str) -> None:
        """Raise a 429 :class:`acmems.errors.CaError` while a pause of ``account`` lasts."""
        ...

    async def hold(self, account: str, seconds: int, reason: str) -> None:
        """Note the CA's pause for ``seconds`` (a longer one already noted stays)."""
        ...


class NoSharedPauses:
    """One acmems: its :class:`AcmeCa` holds the pauses; there is nobody to share them with."""

    async def check(self, account: str) -> None:
        """Never paused here."""

    async def hold(self, account: str, seconds: int, reason: str) -> None:
        """Nothing to note."""
