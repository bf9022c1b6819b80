"""More real DNS servers for the DNS-01 tests: a resolving BIND in front of the authoritative one
(Pebble does not follow CNAMEs itself), Knot DNS and PowerDNS, each taking TSIG-signed updates.

Like :mod:`tests.realservices`: direct child processes on free loopback ports, stopped by PID.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.realservices import _stop, free_port, spawn, tool, wait_for

__all__ = ["Resolver"]


def _answers(port: int, name: str) -> bool:
    import dns.message
    import dns.query

    return bool(dns.query.udp(dns.message.make_query(name, "SOA"), "127.0.0.1", port=port, timeout=0.5).answer)


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
        wait_for(lambda: _answers(self.port, self.probe), 20, "resolving BIND", self.proc, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
