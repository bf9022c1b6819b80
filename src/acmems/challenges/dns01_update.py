"""DNS-01 (RFC 8555 §8.4) through RFC 2136 dynamic updates, TSIG-signed (RFC 8945).

Zone discovery asks the configured server for the SOA of ``_acme-challenge.<name>`` and its parents;
after adding a TXT value we wait until the server serves it, and we delete exactly the values we
added. Values that a crash left behind are listed in a small journal and removed at the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from acmems.errors import DnsUpdateError, Kind
from acmems.fileio import write_atomic
from acmems.settings import DnsUpdateVerification

__all__ = ["DnsJournal", "DnsRecord", "DnsUpdateSolver", "PendingJournal", "build_update", "challenge_name"]

log = logging.getLogger(__name__)
_POLL_FIRST = 0.02
_POLL_MAX = 0.5
_CLEANUP_RETRY_INTERVAL = 30.0


def challenge_name(identifier: str) -> str:
    """``_acme-challenge.<name>`` for an identifier (a wildcard's apex: RFC 8555 §8.4)."""
    return "_acme-challenge." + identifier.removeprefix("*.").rstrip(".").lower()


def build_update(
    zone: str, name: str, value: str, ttl: int, *, delete: bool, key: dns.tsig.Key | None
) -> dns.update.UpdateMessage:
    """The RFC 2136 message that adds (or deletes) exactly one TXT value of ``name``."""
    update = dns.update.UpdateMessage(
        zone,
        keyring=key,
        keyname=key.name if key else None,
        keyalgorithm=key.algorithm if key else dns.tsig.default_algorithm,
    )
    if delete:
        update.delete(name + ".", dns.rdatatype.TXT, f'"{value}"')
    else:
        update.add(name + ".", ttl, dns.rdatatype.TXT, f'"{value}"')
    return update


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One TXT value added at a server, in a zone."""

    server: str
    port: int
    zone: str
    name: str
    value: str


_Record = DnsRecord


class DnsJournal(Protocol):
    """Where the TXT values added and not yet deleted are listed, so that a crash leaves none behind."""

    async def add(self, record: DnsRecord) -> None:
        """Note a value before it is added."""
        ...

    async def remove(self, record: DnsRecord) -> None:
        """Forget a value once it is deleted."""
        ...

    async def records(self) -> list[DnsRecord]:
        """The values left by runs that are gone (a previous run of this process; in a cluster, any
        instance no longer alive) that are to be deleted now."""
        ...


class PendingJournal:
    """The TXT values we added and have not yet deleted, kept on disk across crashes (one instance)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._records: dict[_Record, int] = {}
        if path is not None and path.exists():
            try:
                for entry in json.loads(path.read_text()):
                    self._records[_Record(**entry)] = 1
            except (ValueError, TypeError, OSError) as exc:
                log.warning("DNS journal %s cannot be read (%s); starting a new one", path, exc)

    async def records(self) -> list[_Record]:
        """Every value listed (read at the start, before any order of this run)."""
        return list(self._records)

    async def add(self, record: _Record) -> None:
        """Listed on disk before the value is added (a small file, written at once)."""
        self._records[record] = self._records.get(record, 0) + 1
        self._save()

    async def remove(self, record: _Record) -> None:
        """Taken off the list once deleted."""
        count = self._records.get(record, 0) - 1
        if count > 0:
            self._records[record] = count
        else:
            self._records.pop(record, None)
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = [
            {"server": r.server, "port": r.port, "zone": r.zone, "name": r.name, "value": r.value}
            for r in self._records
        ]
        try:
            write_atomic(self.path, json.dumps(data).encode(), mode=0o600)
        except OSError as exc:
            log.error("DNS journal %s cannot be written: %s", self.path, exc.strerror)


class DnsUpdateSolver:
    """Publishes DNS-01 TXT records on the primary named by ``dns-server``."""

    challenge_type = "dns-01"

    def __init__(self, settings: DnsUpdateVerification, journal: DnsJournal | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.key = (
            dns.tsig.Key(settings.tsig_key_name, settings.tsig_key_secret, settings.tsig_algorithm)
            if settings.tsig_key_name and settings.tsig_key_secret
            else None
        )
        self.journal: DnsJournal = journal or PendingJournal(None)
        self._zones: dict[str, str] = {}
        self._failed_cleanups: set[_Record] = set()
        self._last_retry = 0.0
        self._where = f"{settings.dns_server}:{settings.dns_port}"

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Add the TXT value, then wait until the server serves it."""
        await self._retry_failed_cleanups()
        name = challenge_name(identifier)
        zone = await self.zone_for(name)
        record = _Record(self.settings.dns_server, self.settings.dns_port, zone, name, validation)
        await self.journal.add(record)
        try:
            await self._send(
                build_update(zone, name, validation, self.settings.ttl, delete=False, key=self.key), zone, "add"
            )
        except DnsUpdateError:
            await self.journal.remove(record)
            raise
        try:
            await self._wait_served(zone, name, validation)
        except DnsUpdateError:
            # Not served in time: the CA will not be asked, so take the value out again now.
            try:
                await self._delete(record)
            except DnsUpdateError as exc:
                log.warning("cannot remove %s TXT after a failed wait: %s (journal keeps it)", name, exc.message)
            raise

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Delete exactly the value :meth:`present` added; if the server cannot take it now, it is
        tried again before the next present (and at the next start, from the journal)."""
        name = challenge_name(identifier)
        zone = self._zones.get(name) or await self.zone_for(name)
        record = _Record(self.settings.dns_server, self.settings.dns_port, zone, name, validation)
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

    async def _delete(self, record: _Record) -> None:
        await self._send(
            build_update(record.zone, record.name, record.value, self.settings.ttl, delete=True, key=self.key),
            record.zone,
            "delete",
        )
        await self.journal.remove(record)

    async def recover(self) -> int:
        """Delete the values a previous run (in a cluster: an instance gone) added and never
        removed; how many were removed."""
        removed = 0
        for record in await self.journal.records():
            if (record.server, record.port) != (self.settings.dns_server, self.settings.dns_port):
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

    async def zone_for(self, name: str) -> str:
        """The zone that holds ``name``: the configured ``zone``, or found by SOA queries."""
        if self.settings.zone is not None:
            return self.settings.zone
        cached = self._zones.get(name)
        if cached is not None:
            return cached
        candidate = dns.name.from_text(name)
        while len(candidate.labels) > 1:
            response = await self._query(candidate, dns.rdatatype.SOA, f"SOA of {candidate}")
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
            f"DNS server {self._where} is not authoritative for any zone holding {name}; "
            "set 'zone' or 'dns-server' in the verification block",
            kind=Kind.DNS_REFUSED,
        )

    async def _query(
        self,
        qname: dns.name.Name | str,
        rdtype: dns.rdatatype.RdataType,
        what: str,
        server: tuple[str, int] | None = None,
    ) -> dns.message.Message:
        host, port = server or (self.settings.dns_server, self.settings.dns_port)
        query = dns.message.make_query(qname, rdtype)
        try:
            return await dns.asyncquery.udp(query, host, timeout=self.settings.timeout, port=port)
        except (dns.exception.Timeout, OSError) as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise DnsUpdateError(
                f"DNS server {where} does not answer ({what}); retry later",
                kind=Kind.DNS_UNREACHABLE,
                log_detail=repr(exc),
            ) from None

    async def _send(self, update: dns.update.UpdateMessage, zone: str, action: str) -> None:
        try:
            response = await dns.asyncquery.tcp(
                update, self.settings.dns_server, timeout=self.settings.timeout, port=self.settings.dns_port
            )
        except dns.tsig.PeerError as exc:
            raise DnsUpdateError(
                f"DNS server {self._where} rejected the TSIG signature of the update for zone {zone} "
                f"(NOTAUTH, {type(exc).__name__.removeprefix('Peer')}): check tsig-key-name and tsig-key-secret",
                kind=Kind.DNS_REFUSED,
            ) from None
        except (dns.exception.Timeout, OSError, EOFError) as exc:
            raise DnsUpdateError(
                f"DNS server {self._where} cannot be reached to update zone {zone}; retry later",
                kind=Kind.DNS_UNREACHABLE,
                log_detail=repr(exc),
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsUpdateError(
                f"DNS server {self._where} sent an unusable answer to the update of zone {zone}",
                kind=Kind.DNS_REFUSED,
                log_detail=repr(exc),
            ) from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            hint = {
                "REFUSED": "the server refuses this update (unsigned, or the key's update-policy does not allow it)",
                "NOTAUTH": "the server is not authoritative for the zone or rejected the key",
                "SERVFAIL": "the server failed",
                "NOTZONE": "the name is not in the zone",
            }.get(text, "the update failed")
            raise DnsUpdateError(
                f"DNS server {self._where} answered {text} to the {action} in zone {zone}: {hint}",
                kind=Kind.DNS_UNREACHABLE if text == "SERVFAIL" else Kind.DNS_REFUSED,
            )

    async def _serves(self, name: str, value: str, server: tuple[str, int]) -> bool:
        response = await self._query(name, dns.rdatatype.TXT, f"TXT of {name}", server)
        return any(
            rrset.rdtype == dns.rdatatype.TXT
            and any(b"".join(rdata.strings).decode(errors="replace") == value for rdata in rrset)
            for rrset in response.answer
        )

    async def _wait_served(self, zone: str, name: str, value: str) -> None:
        """Until the primary and every ``check-server`` serve the value (the CA may ask any of them)."""
        deadline = time.monotonic() + self.settings.propagation_timeout
        delay = _POLL_FIRST
        waiting = [(self.settings.dns_server, self.settings.dns_port), *self.settings.check_servers]
        while True:
            served = await asyncio.gather(*(self._serves(name, value, server) for server in waiting))
            waiting = [server for server, ok in zip(waiting, served, strict=True) if not ok]
            if not waiting:
                return
            if time.monotonic() + delay > deadline:
                lagging = ", ".join(f"{h}:{p}" for h, p in waiting)
                raise DnsUpdateError(
                    f"DNS server(s) {lagging} do not serve the new TXT record of {name} (zone {zone}) "
                    f"after {self.settings.propagation_timeout:g} s",
                    kind=Kind.DNS_UNREACHABLE,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
