"""dns-persist-01 (draft-ietf-acme-dns-persist): one TXT record, published once, stands for every
order of this account for a name, so no DNS change per order and no DNS write key.

The record at ``_validation-persist.<name>`` reads ``<issuer domain name>; accounturi=<account URL>``,
with ``; policy=wildcard`` for wildcards (and names below). The text is pure
(:func:`persist_record`, :func:`parse_persist`, :func:`persist_matches`);
:class:`DnsPersistSolver` answers the challenge and, when the block names a DNS server, first checks
that the record is served there, so a missing record is a clear 502 instead of a failed order.
"""

from __future__ import annotations

from dataclasses import dataclass

from acmems.challenges.dns01_update import DnsUpdateSolver
from acmems.core.settings import DnsPersistVerification
from acmems.errors import DnsUpdateError, Kind

__all__ = [
    "CHALLENGE_TYPE",
    "DnsPersistSolver",
    "PersistValue",
    "parse_persist",
    "persist_matches",
    "persist_name",
    "persist_record",
]

CHALLENGE_TYPE = "dns-persist-01"


def persist_name(identifier: str) -> str:
    """``_validation-persist.<name>`` (a wildcard's: of its base name)."""
    return "_validation-persist." + identifier.removeprefix("*.").rstrip(".").lower()


def persist_record(issuer: str, account_uri: str, *, wildcard: bool) -> str:
    """The TXT value to publish."""
    return f"{issuer}; accounturi={account_uri}" + ("; policy=wildcard" if wildcard else "")


@dataclass(frozen=True, slots=True)
class PersistValue:
    """A TXT value read back: the issuer and its parameters (keys lower case)."""

    issuer: str
    params: dict[str, str]


def parse_persist(text: str) -> PersistValue | None:
    """``issuer; key=value; ...``, or None when it is not of that form."""
    first, *parts = (p.strip() for p in text.split(";"))
    issuer = first.lower().rstrip(".")
    if not issuer or any(c.isspace() for c in issuer):  # "." or " . " names no issuer
        return None
    params = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            return None
        params[key.strip().lower()] = value.strip()
    return PersistValue(issuer, params)


def persist_matches(text: str, issuers: tuple[str, ...], account_uri: str, *, wildcard: bool) -> bool:
    """Whether the TXT value lets this account be issued for the name (as the CA checks it)."""
    value = parse_persist(text)
    if value is None or value.issuer not in {i.lower().rstrip(".") for i in issuers}:
        return False
    if value.params.get("accounturi") != account_uri:
        return False
    return not wildcard or value.params.get("policy", "").lower() == "wildcard"


class DnsPersistSolver:
    """Answers dns-persist-01; nothing is published per order. ``present`` gets the expected record
    (``validation``) and the CA's issuer domain names (``token``, comma-separated)."""

    challenge_type = CHALLENGE_TYPE

    def __init__(self, settings: DnsPersistVerification) -> None:
        self.name = settings.name
        self.settings = settings
        self.lookup = DnsUpdateSolver(settings.update) if settings.update is not None else None

    def warnings(self) -> list[str]:
        """Nothing to warn of: the record is published once, by ``acmems persist-record``."""
        return []

    async def recover(self) -> int:
        """Nothing is published per order, so nothing is left behind."""
        return 0

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Check the record is served at the block's DNS server (when it names one)."""
        if self.lookup is None:
            return  # the CA checks it; its answer says what is missing
        expected = parse_persist(validation)
        assert expected is not None
        issuers = tuple(token.split(","))
        name = persist_name(identifier)
        chain = await self.lookup.chain(name)
        found = await self.lookup.servers.txt_values(chain.target)
        wildcard = identifier.startswith("*.")
        if any(persist_matches(f, issuers, expected.params["accounturi"], wildcard=wildcard) for f in found):
            return
        where = self.lookup.servers.describe()
        raise DnsUpdateError(
            f"{where} serves no dns-persist-01 record for {identifier} and this account: publish "
            f'{name}. TXT "{validation}" (acmems persist-record prints it; --publish adds it)',
            kind=Kind.DNS_REFUSED,
        )

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Nothing: the record stays for the next order."""
