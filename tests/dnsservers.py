"""More real DNS servers for the DNS-01 tests: a resolving BIND in front of the authoritative one
(Pebble does not follow CNAMEs itself), Knot DNS and PowerDNS, each taking TSIG-signed updates.

Like :mod:`tests.realservices`: direct child processes on free loopback ports, stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests import waits
from tests.realservices import TSIG_ALGORITHMS as ALGORITHMS
from tests.realservices import (
    Pebble,
    _stop,
    axfr_txt,
    free_port,
    served_txt,
    spawn,
    tool,
    tsig_key_setting,
    wait_for,
    write_key_file,
)

__all__ = ["ALGORITHMS", "Knot", "PowerDns", "Resolver", "resolving_pebble"]


def _answers(port: int, name: str) -> bool:
    import dns.message
    import dns.query

    return bool(dns.query.udp(dns.message.make_query(name, "SOA"), "127.0.0.1", port=port, timeout=0.5).answer)


@contextlib.contextmanager
def resolving_pebble(directory: Path, upstream: int, probe: str) -> Iterator[Pebble]:
    """Pebble asking a :class:`Resolver` in front of the authoritative server on ``upstream`` (so
    that CNAMEs into other zones are followed, as a CA's resolver does); both stopped after."""
    resolver = Resolver(directory / "resolver", upstream, probe).start()
    try:
        ca = Pebble(directory / "pebble", resolver.port, free_port()).start()
        try:
            yield ca
        finally:
            ca.stop()
    finally:
        resolver.stop()


class Resolver:
    """BIND 9 recursing for anyone on loopback by forwarding every query to the authoritative server
    on ``upstream`` (and nothing else), caching for at most a second: what a CA's resolver does with a
    CNAME, on loopback."""

    def __init__(self, directory: Path, upstream: int, probe: str) -> None:
        self.dir = directory
        self.upstream = upstream
        self.probe = probe  # a name the upstream answers, to see the resolver is up
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "resolver.log"

    def start(self) -> Resolver:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        d = self.dir
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";\n'
            f'  managed-keys-directory "{d}"; listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n'
            "  recursion yes; allow-query { 127.0.0.0/8; }; allow-recursion { 127.0.0.0/8; };\n"
            f"  forwarders {{ 127.0.0.1 port {self.upstream}; }}; forward only;\n"
            "  dnssec-validation no; notify no; max-cache-ttl 1; max-ncache-ttl 1; };\ncontrols { };\n"
        )
        self.proc = spawn([tool("named"), "-g", "-c", str(d / "named.conf"), "-n", "1"], self.log)
        wait_for(lambda: _answers(self.port, self.probe), waits.SERVICE_START, "resolving BIND", self.proc, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)


def _zone_text(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 5\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 5\n"
        f"@ IN NS ns.{zone}.\n@ IN A 127.0.0.1\nns IN A 127.0.0.1\n* IN A 127.0.0.1\n"
    )


class _Primary:
    """What the DNS-01 tests need of any primary: its port, zones, TSIG keys (one per algorithm,
    named ``acme-<algorithm>``; ``key_name``/``key_secret``/``key_file`` the hmac-sha256 one) and a
    zone transfer."""

    kind = ""

    def __init__(self, directory: Path, zones: Sequence[str], locked: Sequence[str] = ()) -> None:
        self.dir = directory
        self.zones = tuple(zones)
        self.locked = tuple(locked)  # zones the keys may not update
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / f"{type(self).__name__.lower()}.log"
        self.secrets = {alg: base64.b64encode(secrets.token_bytes(32)).decode() for alg in ALGORITHMS}
        self.key_name = "acme-hmac-sha256"
        self.key_secret = self.secrets["hmac-sha256"]
        self.key_file = directory / "tsig.key"

    def key_setting(self, algorithm: str = "hmac-sha256") -> str:
        """The verification block's lines for this server and one of its keys."""
        return tsig_key_setting(self.port, self.secrets, algorithm)

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        write_key_file(self.key_file, self.key_name, self.key_secret)

    def txt(self, name: str) -> list[str]:
        return served_txt(name, self.port)

    def transfer(self, zone: str) -> list[tuple[str, str]]:
        return axfr_txt(zone, self.port)

    def stop(self) -> None:
        _stop(self.proc)


class Knot(_Primary):
    """Knot DNS (knotd), primary for ``zones``, updates by TSIG-signed RFC 2136 (TXT only)."""

    kind = "knot"

    def start(self) -> Knot:
        self._prepare()
        d = self.dir
        (d / "zones").mkdir(exist_ok=True)
        (d / "db").mkdir(exist_ok=True)
        for zone in self.zones:
            (d / "zones" / f"{zone}.zone").write_text(_zone_text(zone))
        keys = "".join(
            f"  - id: acme-{alg}\n    algorithm: {alg}\n    secret: {secret}\n" for alg, secret in self.secrets.items()
        )
        key_ids = ", ".join(f"acme-{alg}" for alg in ALGORITHMS)
        zones = "".join(
            f"  - domain: {zone}\n    acl: [{'transfer' if zone in self.locked else 'update, transfer'}]\n"
            for zone in self.zones
        )
        (d / "knot.conf").write_text(
            f'server:\n  rundir: "{d}"\n  listen: 127.0.0.1@{self.port}\n  user: root:root\n'
            f'database:\n  storage: "{d}/db"\n'
            f'control:\n  listen: "{d}/knot.sock"\n'
            "log:\n  - target: stderr\n    any: info\n"
            f"key:\n{keys}"
            "acl:\n"
            f"  - id: update\n    key: [{key_ids}]\n    action: update\n    update-type: [TXT]\n"
            "  - id: transfer\n    address: 127.0.0.1\n    action: transfer\n"
            f'template:\n  - id: default\n    storage: "{d}/zones"\n    file: "%s.zone"\n'
            "    zonefile-sync: -1\n    journal-content: changes\n    semantic-checks: off\n"
            f"zone:\n{zones}"
        )
        self.proc = spawn([tool("knotd"), "-c", str(d / "knot.conf")], self.log)
        wait_for(lambda: _answers(self.port, self.zones[0]), waits.SERVICE_START, "Knot DNS", self.proc, self.log)
        return self


class PowerDns(_Primary):
    """PowerDNS Authoritative (pdns_server) with the sqlite3 backend, primary for ``zones``, updates
    by TSIG-signed RFC 2136 (``TSIG-ALLOW-DNSUPDATE``), and its HTTP API on ``api_port``."""

    kind = "powerdns"

    def __init__(
        self, directory: Path, zones: Sequence[str], locked: Sequence[str] = (), records: dict[str, str] | None = None
    ) -> None:
        super().__init__(directory, zones, locked)
        self.records = records or {}  # zone -> more zone-file lines
        self.api_port = 0
        self.api_key = secrets.token_hex(16)

    def _pdnsutil(self, *args: str) -> None:
        result = subprocess.run(
            [tool("pdnsutil"), f"--config-dir={self.dir}", *args], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"pdnsutil {' '.join(args[:2])}: {result.stdout}{result.stderr}")

    def start(self) -> PowerDns:
        import sqlite3

        first = not self.port
        self._prepare()
        self.api_port = self.api_port or free_port()
        d = self.dir
        database = d / "pdns.sqlite3"
        (d / "pdns.conf").write_text(
            f"launch=gsqlite3\ngsqlite3-database={database}\nlocal-address=127.0.0.1\nlocal-port={self.port}\n"
            f"socket-dir={d}\nguardian=no\ndaemon=no\ndisable-syslog=yes\nloglevel=5\n"
            "dnsupdate=yes\nallow-dnsupdate-from=\nallow-axfr-ips=127.0.0.1\ndisable-axfr=no\n"
            f"webserver=yes\nwebserver-address=127.0.0.1\nwebserver-port={self.api_port}\n"
            f"webserver-allow-from=127.0.0.1\napi=yes\napi-key={self.api_key}\n"
        )
        if first:
            schema = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql").read_text()
            with sqlite3.connect(database) as connection:
                connection.executescript(schema)
            for alg, secret in self.secrets.items():
                self._pdnsutil("import-tsig-key", f"acme-{alg}", alg, secret)
            for zone in self.zones:
                (d / f"{zone}.zone").write_text(_zone_text(zone) + self.records.get(zone, ""))
                self._pdnsutil("load-zone", zone, str(d / f"{zone}.zone"))
                if zone not in self.locked:  # from loopback, signed with one of the keys
                    self._pdnsutil("set-meta", zone, "ALLOW-DNSUPDATE-FROM", "127.0.0.0/8")
                    self._pdnsutil("set-meta", zone, "TSIG-ALLOW-DNSUPDATE", *(f"acme-{alg}" for alg in ALGORITHMS))
        self.proc = spawn([tool("pdns_server"), f"--config-dir={d}"], self.log)
        wait_for(lambda: _answers(self.port, self.zones[0]), waits.SERVICE_START, "PowerDNS", self.proc, self.log)
        return self
