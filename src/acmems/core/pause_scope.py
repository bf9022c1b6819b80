"""What a CA's ``rateLimited`` answer pauses: the account, one exact set of names, one registered
domain, or one name. Most of a CA's limits are not the account's: a client that asks six times for
one name must not stop every other client's orders.

The CA's words decide (Boulder's, ``ratelimits/limiter.go``, which Let's Encrypt answers with)::

    too many new orders (N) from this account in the last ...                         -> account
    too many certificates (N) already issued for this exact set of identifiers ...    -> names
    too many certificates (N) already issued for "DOMAIN" in the last ...             -> domain
    too many failed authorizations (N) for "NAME" in the last ...                     -> name

An answer these rules do not recognise pauses the order's exact set of names: the narrowest scope
that is certain to include what the CA refused, since that order will be refused again.

Pure: values in, values out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from acmems.core.rate_limits import names_key, registered_domains

__all__ = ["ACCOUNT", "PauseScope", "Scope", "classify_rate_limit", "scopes_of"]


class Scope(StrEnum):
    """How wide a pause is."""

    ACCOUNT = "account"
    NAMES = "names"  # one exact set of names
    DOMAIN = "domain"  # one registered domain (or IP address, or IPv6 /64)
    NAME = "name"  # one identifier


@dataclass(frozen=True, slots=True)
class PauseScope:
    """One thing the CA refused for a while: ``value`` is empty for the account, the names key
    (:func:`acmems.core.rate_limits.names_key`) of a set, a registered domain, or a name."""

    kind: Scope
    value: str = ""

    def describe(self) -> str:
        """For the 429 and the log: what is paused."""
        if self.kind is Scope.ACCOUNT:
            return "every order of this account"
        if self.kind is Scope.NAMES:
            return f"the set of names {self.value.replace(',', ', ')}"
        if self.kind is Scope.DOMAIN:
            return f"the registered domain {self.value}"
        return f"the name {self.value}"


ACCOUNT = PauseScope(Scope.ACCOUNT)

_QUOTED = r'"([^"]{1,300})"'
_RULES: tuple[tuple[re.Pattern[str], Scope], ...] = (
    (re.compile(r"too many new orders \(\d+\) from this account", re.I), Scope.ACCOUNT),
    (re.compile(r"too many certificates \(\d+\) already issued for this exact set of identifiers", re.I), Scope.NAMES),
    (re.compile(rf"too many certificates \(\d+\) already issued for {_QUOTED}", re.I), Scope.DOMAIN),
    (re.compile(rf"too many failed authorizations \(\d+\) for {_QUOTED}", re.I), Scope.NAME),
)


def _domain_value(quoted: str) -> str:
    """Boulder quotes a registered domain, or an address as a network (``192.0.2.7/32``, an IPv6
    ``/64``): a single address is kept as the address, as :func:`scopes_of` lists it."""
    try:
        network = ipaddress.ip_network(quoted, strict=False)
    except ValueError:
        return quoted.lower()
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def classify_rate_limit(detail: str, names: Sequence[str]) -> PauseScope:
    """What the CA's ``rateLimited`` answer with ``detail`` pauses, for an order of ``names``."""
    for pattern, scope in _RULES:
        found = pattern.search(detail)
        if found is None:
            continue
        if scope is Scope.ACCOUNT:
            return ACCOUNT
        if scope is Scope.NAMES:
            return PauseScope(Scope.NAMES, names_key(names))
        if scope is Scope.DOMAIN:
            return PauseScope(Scope.DOMAIN, _domain_value(found.group(1)))
        return PauseScope(Scope.NAME, found.group(1).lower())
    return PauseScope(Scope.NAMES, names_key(names))


def scopes_of(names: Sequence[str]) -> tuple[PauseScope, ...]:
    """Every scope an order for ``names`` falls under: a pause of any of them holds it."""
    scopes = [ACCOUNT, PauseScope(Scope.NAMES, names_key(names))]
    domains = set(registered_domains(names))
    for name in names:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            continue
        if address.version == 6:
            domains.add(str(ipaddress.ip_network(f"{address}/64", strict=False)))
    scopes += [PauseScope(Scope.DOMAIN, domain) for domain in sorted(domains)]
    # A wildcard's authorization is its base name's: a pause of that name holds it too.
    named = dict.fromkeys(n.lower() for name in names for n in (name, name.removeprefix("*.")))
    scopes += [PauseScope(Scope.NAME, name) for name in named]
    return tuple(scopes)
