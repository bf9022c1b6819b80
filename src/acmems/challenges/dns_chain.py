"""Following ``_acme-challenge.<name>`` CNAMEs (delegation of DNS-01) as a pure state machine.

An authoritative server without recursion answers a CNAME query with one hop (or, inside one of its
zones, several): :class:`CnameWalk` says which name to ask next and, fed each answer, ends with the
:class:`Chain` from the challenge name to the name the TXT value goes to. A loop, more than
:data:`MAX_HOPS` hops, a DNAME and a server failure on the way end it with :class:`ChainError`,
whose message names the chain. No IO here: :mod:`acmems.challenges.dns01_update` asks the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["MAX_HOPS", "Chain", "ChainError", "CnameWalk"]

MAX_HOPS = 8


class ChainError(Exception):
    """The CNAME chain cannot be used; ``str()`` is the one line for the client and the log."""


@dataclass(frozen=True, slots=True)
class Chain:
    """``name`` and the CNAME targets followed from it, in order (empty: no CNAME)."""

    name: str
    hops: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """Where the TXT value goes: the last target, or ``name`` itself."""
        return self.hops[-1] if self.hops else self.name

    def describe(self) -> str:
        """``a -> b -> c`` (just ``a`` without CNAMEs)."""
        return " -> ".join((self.name, *self.hops))


def _text(name: object) -> str:
    return str(name).rstrip(".").lower()


@dataclass(slots=True)
class CnameWalk:
    """The walk from ``name``: ask :attr:`query` for CNAME, :meth:`feed` the answer, until it returns
    the :class:`Chain`."""

    name: str
    max_hops: int = MAX_HOPS
    hops: list[str] = field(default_factory=list)

    @property
    def query(self) -> str:
        """The name whose CNAME is asked next."""
        return self.hops[-1] if self.hops else self.name

    def _chain(self) -> Chain:
        return Chain(self.name, tuple(self.hops))

    def _step(self, target: str) -> None:
        if not target:
            raise ChainError(f"the CNAME of {self.query} points at the DNS root; fix the CNAME record")
        seen = {self.name, *self.hops}
        self.hops.append(target)
        if target in seen:
            raise ChainError(f"CNAME loop: {self._chain().describe()}; fix the CNAME records")
        if len(self.hops) > self.max_hops:
            raise ChainError(
                f"more than {self.max_hops} CNAMEs from {self.name} ({self._chain().describe()}); "
                "point it at the target directly"
            )

    def feed(self, rcode: int, answer: Iterable[dns.rrset.RRset]) -> Chain | None:
        """Take the server's answer to the CNAME query of :attr:`query`: the :class:`Chain` when it
        ends here, ``None`` when :attr:`query` is to be asked next. Raises :class:`ChainError`."""
        rrsets = list(answer)
        for rrset in rrsets:
            if rrset.rdtype == dns.rdatatype.DNAME:
                raise ChainError(
                    f"{self.query} lies under the DNAME {_text(rrset.name)} -> {_text(rrset[0].target)}; "
                    f"acmems does not follow DNAME: publish a CNAME for {self.query} instead"
                )
        if rcode == dns.rcode.SERVFAIL:
            chain = self._chain().describe()
            raise ChainError(
                f"the DNS server failed (SERVFAIL) on the CNAME of {self.query} (chain {chain}): "
                "usually a CNAME loop inside one zone; fix the CNAME records"
            )
        cnames = {_text(rrset.name): _text(rrset[0].target) for rrset in rrsets if rrset.rdtype == dns.rdatatype.CNAME}
        if self.query not in cnames:
            # No CNAME here (NOERROR, NXDOMAIN, or a server not authoritative for the name): the end.
            return self._chain()
        while self.query in cnames:  # a server that followed the chain inside its zone: every hop
            self._step(cnames.pop(self.query))
        return None
