"""DNS-01 at a DNS provider's HTTP API, through dns-lexicon (``type = dns01-lexicon``; the optional
extra ``acmems[lexicon]``).

Only the writing goes to lexicon: CNAMEs, the zone (by SOA, at ``dns-server``), the journal,
waiting until the value is served and cleanup are the same as for RFC 2136
(:class:`acmems.challenges.dns01_update.DnsUpdateSolver`). The zone acmems found is passed to lexicon
as ``delegated``: without it lexicon guesses the zone from the public suffix list and a record of a
sub-zone lands in the parent. lexicon is synchronous: each call runs in a thread, one at a time
per solver (its providers read the record set, then write it back whole).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from acmems.core.settings import LexiconVerification
from acmems.errors import DnsUpdateError, Kind
from acmems.storage.dns_journal import DnsRecord

if TYPE_CHECKING:
    from lexicon.config import ConfigResolver

__all__ = ["LexiconWriter"]

log = logging.getLogger(__name__)


class LexiconWriter:
    """:class:`acmems.challenges.dns01_update.RecordWriter` through one lexicon provider."""

    def __init__(self, settings: LexiconVerification) -> None:
        self.settings = settings
        self.provider = settings.provider
        self._lock = asyncio.Lock()
        # tldextract (lexicon's zone guess, overridden by ``delegated``) logs a traceback each time
        # it cannot fetch the public suffix list; it then uses its own copy, which is all we need.
        logging.getLogger("tldextract").setLevel(logging.CRITICAL)

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        return ((f"lexicon:{self.provider}", 0),)

    def check_at(self, record: DnsRecord) -> list[tuple[str, int]]:
        return list(self.settings.lookup.dns_servers)

    def _config(self, zone: str, name: str) -> dict[str, Any]:
        """lexicon's configuration from this block alone (not its LEXICON_* variables or files in
        the working directory, which the plain-dict form would also read)."""
        return {
            "provider_name": self.provider,
            "domain": name,
            "delegated": zone,
            "ttl": self.settings.lookup.ttl,
            self.provider: dict(self.settings.options),
        }

    def _call(self, action: str, zone: str, name: str, value: str) -> None:
        from lexicon.client import Client
        from lexicon.config import ConfigResolver

        new_resolver = cast("Callable[[], ConfigResolver]", ConfigResolver)  # its __init__ is not annotated
        with Client(new_resolver().with_dict(self._config(zone, name))) as operations:
            if action == "add":
                operations.create_record("TXT", name, value)
            else:
                operations.delete_record(rtype="TXT", name=name, content=value)

    async def _run(self, action: str, zone: str, name: str, value: str) -> None:
        async with self._lock:
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(self._call, action, zone, name, value), self.settings.lookup.timeout * 6
                )
            except TimeoutError:
                raise DnsUpdateError(
                    f"the {self.provider} API (lexicon) did not answer the {action} of {name} TXT in zone {zone} "
                    "in time; retry later",
                    kind=Kind.DNS_UNREACHABLE,
                ) from None
            except Exception as exc:  # lexicon and its providers raise anything (requests, their own)
                raise DnsUpdateError(
                    f"the {self.provider} API (lexicon) refused the {action} of {name} TXT in zone {zone}: "
                    f"{_describe(exc, self.settings.secrets)}",
                    kind=_kind(exc),
                ) from None

    async def add(self, zone: str, name: str, value: str, ttl: int) -> tuple[str, int]:
        await self._run("add", zone, name, value)
        return self.places[0]

    async def delete(self, record: DnsRecord, ttl: int) -> None:
        await self._run("delete", record.zone, record.name, record.value)


def _kind(exc: Exception) -> Kind:
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return Kind.DNS_UNREACHABLE
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return Kind.DNS_UNREACHABLE
    return Kind.DNS_REFUSED


def _describe(exc: Exception, secrets: tuple[str, ...]) -> str:
    """One line for the error, secrets cut out (a provider may echo its token in a URL or message)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = f"HTTP {status}" if isinstance(status, int) else type(exc).__name__
    detail = str(exc).splitlines()[0] if str(exc) else ""
    if detail:
        text += f" ({detail[:200]})"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
