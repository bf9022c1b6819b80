"""``type = none``: never caches; every request is a new issuance."""

from __future__ import annotations

from datetime import datetime

__all__ = ["NoCache"]


class NoCache:
    """A cache that keeps nothing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get(
        self, csr_pem: bytes, profile: str | None = None, now: datetime | None = None, *, allow_due: bool = False
    ) -> bytes | None:
        """Always a miss."""
        return None

    def put(
        self,
        csr_pem: bytes,
        chain_pem: bytes,
        profile: str | None = None,
        verification: str | None = None,
        requested: bool = True,
    ) -> None:
        """Keeps nothing."""
