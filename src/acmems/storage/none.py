"""``type = none``: never caches; every request is a new issuance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from acmems.storage.base import CachedCertificate, Claim, LocalClaim, Origin

_CLIENT = Origin()

__all__ = ["NoCache"]


class NoCache:
    """A store that keeps nothing: every method answers "nothing here"."""

    where = "-"
    keeps_certificates = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def get(
        self, csr_pem: bytes, profile: str | None = None, *, allow_due: bool = False, now: datetime | None = None
    ) -> bytes | None:
        """Always a miss."""
        return None

    async def put(self, csr_pem: bytes, chain_pem: bytes, origin: Origin = _CLIENT) -> None:
        """Keeps nothing."""

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Nothing to forget."""

    async def load_index(self) -> int:
        """Nothing stored."""
        return 0

    def entries(self) -> list[CachedCertificate]:
        """None."""
        return []

    def count(self) -> int:
        """Zero."""
        return 0

    def soonest_expiry(self) -> datetime | None:
        """None."""
        return None

    def update(self, entry: CachedCertificate) -> None:
        """Nothing to update."""

    def note_requested(self, digest: str, when: float) -> None:
        """Nothing to note."""

    def take_requested(self) -> set[str]:
        """Nothing was asked for from here."""
        return set()

    async def read(self, entry: CachedCertificate) -> tuple[bytes, bytes]:
        """Never called: :meth:`entries` is empty."""
        raise FileNotFoundError(f"storage {self.name} keeps no certificates")

    async def remove_serial(self, serial: int) -> int:
        """Nothing to remove."""
        return 0

    def problems(self) -> list[str]:
        """None."""
        return []

    async def claim(self, digest: str, verification: str) -> Claim | None:
        """Always granted: only this process orders for this store (the issuer's single flight)."""
        return LocalClaim()

    async def wait_released(self, digest: str, verification: str) -> None:
        """Never waited for: :meth:`claim` is always granted."""

    async def put_many(self, items: Sequence[tuple[bytes, bytes, Origin]]) -> None:
        """Keeps nothing."""
