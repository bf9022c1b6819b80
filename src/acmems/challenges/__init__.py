"""Challenge solvers, chosen by a ``[verification]`` block's ``type``."""

from __future__ import annotations

from typing import Protocol

from acmems.challenges.dns01_update import DnsUpdateSolver
from acmems.challenges.dns_journal import DnsJournal, DnsRecord, PendingJournal
from acmems.challenges.dns_persist import DnsPersistSolver
from acmems.challenges.http01 import Http01Solver
from acmems.core.settings import DnsPersistVerification, Http01Verification, LexiconVerification, VerificationSettings

__all__ = [
    "ChallengeSolver",
    "DnsJournal",
    "DnsPersistSolver",
    "DnsRecord",
    "DnsUpdateSolver",
    "Http01Solver",
    "PendingJournal",
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
