"""DNS-01 (RFC 8555 §8.4) through RFC 2136 dynamic updates, TSIG-signed (RFC 8945).

Before anything is sent, ``_acme-challenge.<name>`` is followed through its CNAMEs at the primary
(:mod:`acmems.challenges.dns_chain`; delegation to a zone only acmems may update), then the zone of
the final name is found by SOA queries. The value is added there, one value at a time, and acmems
waits until the primary and every ``check-server`` serve it; afterwards exactly that value is
deleted, at the name and zone noted in the journal (:mod:`acmems.storage.dns_journal`), which
also lets the next start remove what a crash left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig

from acmems.challenges.dns_chain import Chain, ChainError, CnameWalk
from acmems.challenges.dns_servers import DnsServers, build_update, where
from acmems.core.backoff import capped_backoff
from acmems.core.settings import DnsUpdateVerification
from acmems.errors import DnsUpdateError, Kind
from acmems.storage.dns_journal import DnsJournal, DnsRecord, PendingJournal

__all__ = [
    "DnsJournal",
    "DnsRecord",
    "DnsUpdateSolver",
    "PendingJournal",
    "RecordWriter",
    "build_update",
    "challenge_name",
]

log = logging.getLogger(__name__)
_POLL_FIRST = 0.02
_POLL_MAX = 0.5
_CLEANUP_RETRY_INTERVAL = 30.0


def challenge_name(identifier: str) -> str:
    """``_acme-challenge.<name>`` for an identifier (a wildcard's apex: RFC 8555 §8.4)."""
    return "_acme-challenge." + identifier.removeprefix("*.").rstrip(".").lower()


class RecordWriter(Protocol):
    """Adds and deletes one TXT value: RFC 2136 (:class:`DnsServers`) or a provider's API
    (:class:`acmems.challenges.dns_lexicon.LexiconWriter`)."""

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        """How journal records name where this writer puts values (server, port)."""
        ...

    async def add(self, zone: str, name: str, value: str, ttl: int) -> tuple[str, int]:
        """Add the value beside any others; which of :attr:`places` took it."""
        ...

    async def delete(self, record: DnsRecord, ttl: int) -> None:
        """Delete exactly that value."""
        ...

    def check_at(self, record: DnsRecord) -> list[tuple[str, int]]:
        """The DNS servers that must serve the value before the CA is told."""
        ...


class DnsUpdateSolver:
    """Publishes DNS-01 TXT records on the primaries named by ``dns-server``."""

    challenge_type = "dns-01"

    def __init__(
        self, settings: DnsUpdateVerification, journal: DnsJournal | None = None, writer: RecordWriter | None = None
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.key = (
            dns.tsig.Key(
                settings.tsig_key_name,
                settings.tsig_key_secret,
                # RFC 8945 names MD5 by its old long name; the others as configured
                dns.tsig.HMAC_MD5 if settings.tsig_algorithm == "hmac-md5" else settings.tsig_algorithm,
            )
            if settings.tsig_key_name and settings.tsig_key_secret
            else None
        )
        self.servers = DnsServers(settings.dns_servers, self.key, settings.timeout)  # queries (and updates)
        self.writer: RecordWriter = writer or self.servers
        self.journal: DnsJournal = journal or PendingJournal(None)
        self._zones: dict[str, str] = {}
        # (challenge name, value) -> the record present() added: cleanup deletes it, never resolving again
        self._added: dict[tuple[str, str], list[DnsRecord]] = {}
        self._failed_cleanups: set[DnsRecord] = set()
        self._last_retry = 0.0

    def warnings(self) -> list[str]:
        """What the operator should know at start about this block's key."""
        out: list[str] = []
        if self.writer is not self.servers:
            return out  # the provider's API has its own credentials
        if self.key is None:
            out.append(
                f"verification {self.name!r} sends DNS updates without TSIG: anyone who can reach "
                f"{self.servers.describe()} could change the zone the same way; set tsig-key-file"
            )
        elif self.settings.tsig_algorithm == "hmac-md5":
            out.append(
                f"verification {self.name!r} signs DNS updates with hmac-md5, which is weak: "
                "give the key hmac-sha256 on the server and here"
            )
        return out

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Follow the CNAMEs, add the TXT value at the end of them, then wait until it is served."""
        await self._retry_failed_cleanups()
        name = challenge_name(identifier)
        chain = await self.chain(name)
        target = chain.target
        try:
            zone = await self.zone_for(target)
        except DnsUpdateError as exc:
            raise self.via(chain, exc) from None
        record = DnsRecord(*self.writer.places[0], zone, target, validation)
        await self.journal.add(record)
        try:
            server = await self.writer.add(zone, target, validation, self.settings.ttl)
        except DnsUpdateError as exc:
            await self.journal.remove(record)
            raise self.via(chain, exc) from None
        if server != (record.server, record.port):  # another primary took it: the journal says which
            taken = DnsRecord(*server, zone, target, validation)
            await self.journal.add(taken)
            await self.journal.remove(record)
            record = taken
        added = self._added.setdefault((name, validation), [])
        added.append(record)
        try:
            await self._wait_served(record)
        except DnsUpdateError:
            # Not served in time: the CA will not be asked, so take the value out again now.
            added.remove(record)
            if not added:
                self._added.pop((name, validation), None)
            try:
                await self._delete(record)
            except DnsUpdateError as exc:
                self._failed_cleanups.add(record)
                log.warning("cannot remove %s TXT after a failed wait: %s (journal keeps it)", target, exc.message)
            raise

    @staticmethod
    def via(chain: Chain, exc: DnsUpdateError) -> DnsUpdateError:
        """``exc`` saying which CNAME led there (unchanged without CNAMEs)."""
        if not chain.hops:
            return exc
        return DnsUpdateError(
            f"{chain.name} is a CNAME to {chain.target} ({chain.describe()}): {exc.message}",
            kind=exc.kind,
            log_detail=exc.log_detail,
        )

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Delete exactly the value :meth:`present` added, where it added it; if the server cannot
        take it now, it is tried again before the next present (and at the next start, from the journal)."""
        key = (challenge_name(identifier), validation)
        added = self._added.get(key)
        if not added:
            return  # present() did not add it (it failed), or it is deleted already
        record = added.pop()
        if not added:
            del self._added[key]
        try:
            await self._delete(record)
        except DnsUpdateError:
            self._failed_cleanups.add(record)
            raise

    async def _retry_failed_cleanups(self) -> None:
        now = time.monotonic()
        if not self._failed_cleanups or now - self._last_retry < _CLEANUP_RETRY_INTERVAL:
            return
        self._last_retry = now
        for record in list(self._failed_cleanups):
            try:
                await self._delete(record)
            except DnsUpdateError as exc:
                log.info("left-over %s TXT still cannot be removed: %s", record.name, exc.message)
                return
            self._failed_cleanups.discard(record)
            log.info("removed the left-over %s TXT value of an earlier order", record.name)

    async def _delete(self, record: DnsRecord) -> None:
        await self.writer.delete(record, self.settings.ttl)
        await self.journal.remove(record)

    async def recover(self) -> int:
        """Delete the values a previous run (in a cluster: an instance gone) added and never
        removed; how many were removed."""
        removed = 0
        for record in await self.journal.records():
            if (record.server, record.port) not in self.writer.places:
                continue
            try:
                await self._delete(record)
                removed += 1
            except DnsUpdateError as exc:
                self._failed_cleanups.add(record)  # tried again before the next present
                log.warning("cannot remove the stale record %s TXT %s yet: %s", record.name, record.value, exc.message)
        if removed:
            log.info("removed %d _acme-challenge record(s) left by an earlier run", removed)
        return removed

    async def chain(self, name: str) -> Chain:
        """``name``'s CNAME chain at the primary (none when ``follow-cname = no``). Raises
        :class:`DnsUpdateError` (502) for a loop, too many hops or a DNAME."""
        walk = CnameWalk(name)
        if not self.settings.follow_cname:
            return Chain(name)
        while True:
            response = await self.servers.query(walk.query, dns.rdatatype.CNAME, f"CNAME of {walk.query}")
            try:
                chain = walk.feed(response.rcode(), response.answer)
            except ChainError as exc:
                raise DnsUpdateError(str(exc), kind=Kind.DNS_REFUSED) from None
            if chain is not None:
                return chain

    async def zone_for(self, name: str) -> str:
        """The zone that holds ``name``: the configured ``zone``, or found by SOA queries."""
        if self.settings.zone is not None:
            return self.settings.zone
        cached = self._zones.get(name)
        if cached is not None:
            return cached
        candidate = dns.name.from_text(name)
        while len(candidate.labels) > 1:
            response = await self.servers.query(candidate, dns.rdatatype.SOA, f"SOA of {candidate}")
            rcode = response.rcode()
            for section in (response.answer, response.authority):
                for rrset in section:
                    if rrset.rdtype == dns.rdatatype.SOA:
                        zone = rrset.name.to_text(omit_final_dot=True).lower()
                        self._zones[name] = zone
                        return zone
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED, dns.rcode.NOTAUTH):
                break
            candidate = candidate.parent()
        raise DnsUpdateError(
            f"DNS server {self.servers.describe()} is not authoritative for any zone holding {name}; "
            "set 'zone' or 'dns-server' in the verification block",
            kind=Kind.DNS_REFUSED,
        )

    async def _serves(self, name: str, value: str, server: tuple[str, int]) -> bool:
        return value in await self.servers.txt_values(name, server)

    async def _wait_served(self, record: DnsRecord) -> None:
        """Until the primary that took it and every ``check-server`` serve the value (the CA may ask
        any of them)."""
        deadline = time.monotonic() + self.settings.propagation_timeout
        polls = 1
        waiting = [*self.writer.check_at(record), *self.settings.check_servers]
        while True:
            delay = capped_backoff(polls, _POLL_FIRST, _POLL_MAX)
            served = await asyncio.gather(*(self._serves(record.name, record.value, s) for s in waiting))
            waiting = [server for server, ok in zip(waiting, served, strict=True) if not ok]
            if not waiting:
                return
            if time.monotonic() + delay > deadline:
                lagging = ", ".join(where(s) for s in waiting)
                raise DnsUpdateError(
                    f"DNS server(s) {lagging} do not serve the new TXT record of {record.name} (zone {record.zone}) "
                    f"after {self.settings.propagation_timeout:g} s",
                    kind=Kind.DNS_UNREACHABLE,
                )
            await asyncio.sleep(delay)
            polls += 1
