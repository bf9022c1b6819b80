"""Talking to the primaries named by ``dns-server`` (one or several, tried in order): queries, and
RFC 2136 updates signed with TSIG (RFC 8945), with one line that says what to fix for each way a
server can refuse (:data:`UPDATE_ANSWERS`, :data:`TSIG_ANSWERS`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from acmems.errors import DnsUpdateError, Kind
from acmems.storage.dns_journal import DnsRecord

__all__ = ["TSIG_ANSWERS", "UPDATE_ANSWERS", "DnsServers", "build_update", "where"]

log = logging.getLogger(__name__)

# The update's rcode -> what to fix ({key} names the key, {zone} and {name} the record's place).
UPDATE_ANSWERS = {
    "REFUSED": "the server refuses this change: allow key {key} to update TXT records of {name} in zone {zone} "
    "(BIND update-policy, Knot acl, PowerDNS TSIG-ALLOW-DNSUPDATE); PowerDNS also refuses a wrong "
    "tsig-key-secret, an unknown key or a clock off by minutes: its log says which",
    "NOTAUTH": "the server is not the primary of zone {zone}: point dns-server at the zone's primary",
    "NOTZONE": "{name} does not lie in zone {zone}: correct 'zone' in the verification block",
    "SERVFAIL": "the server failed to apply it; see its log",
}
# dnspython's exception for a TSIG error the server signalled -> (rcode, what to fix)
TSIG_ANSWERS = {
    "PeerBadSignature": ("BADSIG", "the TSIG secret differs from the server's for key {key}: check tsig-key-secret"),
    "PeerBadKey": (
        "BADKEY",
        "the server does not know key {key} ({algorithm}), or (Knot) its acl does not let the key update zone "
        "{zone}: check tsig-key-name, tsig-algorithm and the zone's acl",
    ),
    "PeerBadTime": (
        "BADTIME",
        "this machine's clock and the server's differ by more than 5 minutes: set both by NTP",
    ),
    "PeerBadTruncation": ("BADTRUNC", "the server refuses a truncated TSIG MAC: check tsig-algorithm"),
}


def where(server: tuple[str, int]) -> str:
    """``host:port`` (``[v6]:port``); a place without a port (``lexicon:<provider>``) as it is."""
    host, port = server
    if port == 0:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_update(
    zone: str, name: str, value: str, ttl: int, *, delete: bool, key: dns.tsig.Key | None
) -> dns.update.UpdateMessage:
    """The RFC 2136 message that adds (or deletes) exactly one TXT value of ``name``: the other
    values of the record set are never touched."""
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


class DnsServers:
    """The primaries, in the order given, with the key and timeout their updates use."""

    def __init__(self, servers: Sequence[tuple[str, int]], key: dns.tsig.Key | None, timeout: float) -> None:
        self.servers = tuple(servers)
        self.key = key
        self.timeout = timeout

    def describe(self) -> str:
        return ", ".join(where(s) for s in self.servers)

    # -- RecordWriter (acmems.challenges.dns01_update): RFC 2136 updates to the primaries

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        return self.servers

    async def add(self, zone: str, name: str, value: str, ttl: int) -> tuple[str, int]:
        return await self.update(zone, name, value, ttl, delete=False)

    async def delete(self, record: DnsRecord, ttl: int) -> None:
        await self.update(record.zone, record.name, record.value, ttl, delete=True, first=(record.server, record.port))

    def check_at(self, record: DnsRecord) -> list[tuple[str, int]]:
        return [(record.server, record.port)]  # the primary that took it

    async def query(
        self,
        qname: dns.name.Name | str,
        rdtype: dns.rdatatype.RdataType,
        what: str,
        server: tuple[str, int] | None = None,
    ) -> dns.message.Message:
        """Ask ``server`` (or the first primary that answers). Raises :class:`DnsUpdateError`."""
        query = dns.message.make_query(qname, rdtype)
        failures = []
        for host, port in (server,) if server else self.servers:
            try:
                return await dns.asyncquery.udp(query, host, timeout=self.timeout, port=port)
            except (dns.exception.Timeout, OSError) as exc:
                failures.append(f"{where((host, port))}: {exc!r}")
        targets = where(server) if server else self.describe()
        raise DnsUpdateError(
            f"DNS server {targets} does not answer ({what}); retry later",
            kind=Kind.DNS_UNREACHABLE,
            log_detail="; ".join(failures),
        )

    async def txt_values(self, name: str, server: tuple[str, int] | None = None) -> list[str]:
        """The TXT values ``server`` (or the first primary that answers) serves at ``name`` now."""
        response = await self.query(name, dns.rdatatype.TXT, f"TXT of {name}", server)
        return [
            b"".join(rdata.strings).decode(errors="replace")
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
        ]

    async def update(
        self, zone: str, name: str, value: str, ttl: int, *, delete: bool, first: tuple[str, int] | None = None
    ) -> tuple[str, int]:
        """Send one add (or delete) to the primaries in order, ``first`` before the others, until one
        takes it; which one did. A definite refusal is not tried elsewhere: the primaries of one zone
        share its data and its rules. Raises :class:`DnsUpdateError`."""
        order = [first] if first else []
        order += [s for s in self.servers if s != first]
        error: DnsUpdateError | None = None
        for server in order:
            message = build_update(zone, name, value, ttl, delete=delete, key=self.key)
            try:
                await self._send(message, server, zone, name, "delete" if delete else "add")
                return server
            except DnsUpdateError as exc:
                if exc.kind is not Kind.DNS_UNREACHABLE:
                    raise
                if error is not None or len(order) > 1:
                    log.info("%s; trying the next dns-server", exc.message)
                error = error or exc
        assert error is not None
        raise error

    async def _has_zone(self, server: tuple[str, int], zone: str) -> bool:
        try:
            response = await self.query(zone, dns.rdatatype.SOA, f"SOA of {zone}", server)
        except DnsUpdateError:
            return True  # cannot tell: keep the server's own answer
        return any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.answer)

    def _fix(self, text: str, zone: str, name: str) -> str:
        algorithm = self.key.algorithm.to_text(omit_final_dot=True) if self.key else "-"
        key = self.key.name.to_text(omit_final_dot=True) if self.key else "(none: unsigned)"
        return text.format(key=key, algorithm=algorithm, zone=zone, name=name)

    async def _exchange(self, update: dns.update.UpdateMessage, server: tuple[str, int]) -> dns.message.Message:
        """Send over TCP, read the answer, check its TSIG. An error answer may come unsigned (a server
        not authoritative for the zone cannot sign): then its rcode is taken, but never as success."""
        wire = update.to_wire()
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(*server)
            try:
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
            finally:
                writer.close()
        try:
            response = dns.message.from_wire(data, keyring=update.keyring, request_mac=update.mac)
        except dns.exception.FormError:
            response = dns.message.from_wire(data, keyring=False)
            if update.keyring is None or response.rcode() == dns.rcode.NOERROR:
                raise
        return response

    async def _send(
        self, update: dns.update.UpdateMessage, server: tuple[str, int], zone: str, name: str, action: str
    ) -> None:
        at = where(server)
        try:
            response = await self._exchange(update, server)
        except dns.tsig.PeerError as exc:
            error, fix = TSIG_ANSWERS.get(type(exc).__name__, ("TSIG error", "check the TSIG key"))
            raise DnsUpdateError(
                f"DNS server {at} rejected the TSIG signature of the {action} in zone {zone} "
                f"(NOTAUTH, {error}): {self._fix(fix, zone, name)}",
                kind=Kind.DNS_REFUSED,
            ) from None
        except (dns.exception.Timeout, OSError, EOFError) as exc:
            raise DnsUpdateError(
                f"DNS server {at} cannot be reached to update zone {zone}; retry later",
                kind=Kind.DNS_UNREACHABLE,
                log_detail=repr(exc),
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsUpdateError(
                f"DNS server {at} sent an unusable answer to the {action} in zone {zone}",
                kind=Kind.DNS_REFUSED,
                log_detail=repr(exc),
            ) from None
        if not update.is_response(response):
            raise DnsUpdateError(
                f"DNS server {at} sent an answer that does not belong to the {action} in zone {zone}",
                kind=Kind.DNS_REFUSED,
            )
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if text == "REFUSED" and not await self._has_zone(server, zone):
            text = "REFUSED (it has no zone " + zone + ")"  # PowerDNS refuses what it does not serve
            rcode = dns.rcode.NOTAUTH
        fix = self._fix(UPDATE_ANSWERS.get(dns.rcode.to_text(rcode), "the update failed; see its log"), zone, name)
        raise DnsUpdateError(
            f"DNS server {at} answered {text} to the {action} of {name} TXT in zone {zone}: {fix}",
            kind=Kind.DNS_UNREACHABLE if text == "SERVFAIL" else Kind.DNS_REFUSED,
        )
