"""Challenge solvers, chosen by a ``[verification]`` block's ``type``."""

from __future__ import annotations

from typing import Protocol

from acmems.challenges.dns01_update import DnsUpdateSolver
from acmems.challenges.dns_persist import DnsPersistSolver
from acmems.challenges.http01 import Http01Solver
from acmems.core.settings import (
    DnsPersistVerification,
    DnsUpdateVerification,
    Http01Verification,
    LexiconVerification,
    VerificationSettings,
)
from acmems.storage.dns_journal import DnsJournal, DnsRecord, PendingJournal

__all__ = [
    "ChallengeSolver",
    "DnsJournal",
    "DnsPersistSolver",
    "DnsRecord",
    "DnsUpdateSolver",
    "Http01Solver",
    "PendingJournal",
    "make_dns_update_solver",
    "make_solver",
]


class ChallengeSolver(Protocol):
    """Publishes what the CA checks for one challenge type (RFC 8555 §8) and removes it after."""

    name: str
    challenge_type: str  # "http-01", "dns-01" or "dns-persist-01", as the CA names it

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Make ``validation`` visible for ``identifier`` (key authorization or TXT value)."""
        ...

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Remove what :meth:`present` published; never raises for a missing entry."""
        ...

    def warnings(self) -> list[str]:
        """What the operator should know at start about this verification (a weak TSIG key)."""
        ...

    async def recover(self) -> int:
        """Remove what earlier runs published and never removed (their journal); how many."""
        ...


def make_solver(settings: VerificationSettings, journal: DnsJournal | None = None) -> ChallengeSolver:
    """The solver for a ``[verification]`` block; DNS solvers record pending values in ``journal``."""
    if isinstance(settings, Http01Verification):
        return Http01Solver(settings.name)
    if isinstance(settings, DnsPersistVerification):
        return DnsPersistSolver(settings)
    if isinstance(settings, LexiconVerification):
        from acmems.challenges.dns_lexicon import LexiconWriter  # dns-lexicon, an optional extra

        return DnsUpdateSolver(settings.lookup, journal, LexiconWriter(settings))
    return DnsUpdateSolver(settings, journal)


def make_dns_update_solver(settings: VerificationSettings) -> DnsUpdateSolver:
    """A DNS-01 solver without a journal, for ``acmems dns-check`` (which asks it more than the
    :class:`ChallengeSolver` interface offers: the zone, the servers, a probe).

    Raises:
        ValueError: ``settings`` is not a ``dns01-dnsUpdate`` or ``dns01-lexicon`` block.
    """
    if isinstance(settings, LexiconVerification):
        from acmems.challenges.dns_lexicon import LexiconWriter  # dns-lexicon, an optional extra

        return DnsUpdateSolver(settings.lookup, None, LexiconWriter(settings))
    if isinstance(settings, DnsUpdateVerification):
        return DnsUpdateSolver(settings, None)
    raise ValueError(f"verification {settings.name!r} does not update DNS zones")
