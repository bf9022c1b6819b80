"""Real services on loopback for tests, the demo and the benchmarks: Pebble, BIND 9, nginx, acmems.

Each runs as a direct child process on free ports, with its log in its own folder, and is stopped
by PID. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import waits

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".cache" / "bin"
ZONES = ("example.test", "sub.example2.test")
TSIG_KEY_NAME = "acme-update"
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha224", "hmac-sha384", "hmac-sha512", "hmac-sha1", "hmac-md5")

__all__ = [
    "ZONES",
    "Acmems",
    "Bind",
    "MissingTool",
    "Nginx",
    "NginxTls",
    "Pebble",
    "ServiceError",
    "axfr_txt",
    "free_port",
    "make_tls",
    "missing_tools",
    "served_txt",
    "spawn",
    "tool",
    "tsig_key_setting",
    "wait_for",
    "write_key_file",
]


class ServiceError(RuntimeError):
    """A service did not start; the message holds the end of its log."""


# Every program the tests, the demo and the benchmarks run, and the Debian package that brings it;
# scripts/setup-system.sh installs each of these packages (tests/unit/test_setup.py checks that).
TOOLS = {
    "named": "bind9",
    "nginx": "nginx",
    "apache2": "apache2",
    "haproxy": "haproxy",
    "openssl": "openssl",
    "curl": "curl",
    "wget": "wget",
    "dash": "dash",
    "wrk": "wrk",
    "systemd-analyze": "systemd",
    "postgres": "postgresql-15",
    "initdb": "postgresql-15",
    "pg_isready": "postgresql-client-15",
    "pg_basebackup": "postgresql-client-15",  # a streaming standby (tests/pgservice.py)
    "psql": "postgresql-client-15",
    "chromium-headless-shell": "chromium-headless-shell",  # renders /status (tests/integration/test_notify.py)
    "promtool": "prometheus",  # checks contrib/prometheus/acmems-alerts.yml
    "knotd": "knot",  # DNS-01 against Knot DNS (tests/dnsservers.py)
    "pdns_server": "pdns-server",  # DNS-01 against PowerDNS, by RFC 2136 and through lexicon
    "pdnsutil": "pdns-server",
    "lego": "lego",  # an ACME client of [acme-server] (tests/acme_clients.py)
    "caddy": "caddy",  # a web server that gets its certificate from [acme-server]
    # not a program: PowerDNS' sqlite3 backend, found by its schema file (see _find)
    "pdns-backend-sqlite3": "pdns-backend-sqlite3",
}
# files that stand for a package with no program of its own
_FILES = {"pdns-backend-sqlite3": "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"}


class MissingTool(ServiceError):
    """A program a test needs is not installed; the message names its package."""


def missing_tools() -> dict[str, str]:
    """The programs of :data:`TOOLS` that cannot be found, with their packages."""
    return {name: package for name, package in TOOLS.items() if _find(name) is None}


def _find(name: str) -> str | None:
    if name in _FILES:
        return _FILES[name] if os.path.exists(_FILES[name]) else None
    found = shutil.which(name)
    if found is None:
        for folder in ("/usr/sbin", "/sbin", "/usr/lib/postgresql/15/bin"):  # not on every user's PATH
            if os.access(f"{folder}/{name}", os.X_OK):
                return f"{folder}/{name}"
    return found


def tool(name: str) -> str:
    """The path of program ``name`` (one of :data:`TOOLS`).

    Raises:
        MissingTool: naming the Debian package to install (``make test`` installs them all).
    """
    found = _find(name)
    if found is None:
        raise MissingTool(
            f"{name} is not installed: it comes with the Debian package {TOOLS[name]!r}, which "
            "`make test` installs (scripts/setup-system.sh); run that, or apt-get install it"
        )
    return found


def _ephemeral_ports() -> range:
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP (and, for DNS, UDP) port that is free right now on ``host``, never handed out before in
    this run, and outside the kernel's range for outgoing connections: a port taken from that range
    (bind to port 0) can meanwhile become the local port of any client's connection (curl, Pebble,
    psycopg), and the service that was to listen there then finds it in use."""
    for _ in range(10_000):
        port = random.randrange(10000, 65536)
        if port in _EPHEMERAL or port in _HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((host, port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    raise ServiceError("no free port outside the ephemeral range")


def wait_for(
    check: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Call ``check()`` until it returns true; raise :class:`ServiceError` with the log on timeout."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a readiness probe: any failure means "not yet"
            pass
        time.sleep(0.05)  # not sync: wait_for's poll interval; the check is the event
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "timed out"
    raise ServiceError(f"{what} did not become ready ({state}):\n{tail}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def spawn(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` as a direct child, its output appended to ``log``."""
    with log.open("ab") as logf:
        return subprocess.Popen(list(command), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def make_tls(directory: Path, names: Sequence[str] = ("localhost",)) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and ``names``.

    Returns:
        (CA certificate, server certificate, server key) paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acmems test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class Bind:
    """BIND 9, authoritative for :data:`ZONES`, taking TXT updates only when TSIG-signed."""

    def __init__(self, directory: Path, zones: dict[str, str] | None = None, locked: Sequence[str] = ()) -> None:
        """``zones``: zone -> further records (default: :data:`ZONES`, none); the key may update
        TXT records in every zone but those ``locked``."""
        self.dir = directory
        self.zones = zones if zones is not None else dict.fromkeys(ZONES, "")
        self.locked = tuple(locked)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "named.log"
        self.key_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.key_name = TSIG_KEY_NAME
        self.key_file = directory / "tsig.key"
        # a key per TSIG algorithm too, named acme-<algorithm> (tests/integration/test_dns_servers.py)
        self.secrets = {alg: base64.b64encode(secrets.token_bytes(32)).decode() for alg in TSIG_ALGORITHMS}

    def key_setting(self, algorithm: str = "hmac-sha256") -> str:
        """A verification block's lines for this server and its key of ``algorithm``."""
        return tsig_key_setting(self.port, self.secrets, algorithm)

    def start(self) -> Bind:
        named = tool("named")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "zones").mkdir(exist_ok=True)
        self.port = self.port or free_port()  # a restart keeps its port
        write_key_file(self.key_file, self.key_name, self.key_secret)
        zones = []
        for zone, records in self.zones.items():
            (self.dir / "zones" / f"{zone}.zone").write_text(
                f"$TTL 5\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 5\n"
                f"@ IN NS ns.{zone}.\n@ IN A 127.0.0.1\nns IN A 127.0.0.1\n* IN A 127.0.0.1\n{records}"
            )
            grants = "".join(f"grant {k} zonesub TXT; " for k in (self.key_name, *(f"acme-{a}" for a in self.secrets)))
            policy = "" if zone in self.locked else f"update-policy {{ {grants}}}; "
            zones.append(f'zone "{zone}" {{ type primary; file "zones/{zone}.zone"; {policy}}};')
        d = self.dir
        (d / "named.conf").write_text(
            f'include "{self.key_file}";\n'
            + "".join(f'key "acme-{a}" {{ algorithm {a}; secret "{k}"; }};\n' for a, k in self.secrets.items())
            + f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";\n'
            f'  managed-keys-directory "{d}"; listen-on port {self.port} {{ 127.0.0.1; }};\n'
            "  listen-on-v6 { none; }; recursion no; allow-query { 127.0.0.0/8; }; allow-transfer { 127.0.0.1; };\n"
            "  dnssec-validation no; notify no; };\ncontrols { };\n" + "\n".join(zones) + "\n"
        )
        self.proc = spawn([named, "-g", "-c", str(d / "named.conf"), "-n", "2"], self.log)
        wait_for(self._answers, waits.SERVICE_START, "BIND", self.proc, self.log)
        return self

    def _answers(self) -> bool:
        import dns.message
        import dns.query

        query = dns.message.make_query(next(iter(self.zones)), "SOA")
        answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
        return bool(answer.answer)

    def txt(self, name: str) -> list[str]:
        """The TXT values BIND serves for ``name`` now."""
        return served_txt(name, self.port)

    def transfer(self, zone: str) -> list[tuple[str, str]]:
        """Every TXT record of ``zone`` by a zone transfer (AXFR): (name, value) pairs."""
        return axfr_txt(zone, self.port)

    def stop(self) -> None:
        _stop(self.proc)


def served_txt(name: str, port: int) -> list[str]:
    """The TXT values the DNS server on 127.0.0.1:``port`` serves for ``name`` now."""
    import dns.message
    import dns.query
    import dns.rdatatype

    answer = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2)
    return [b"".join(r.strings).decode() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.TXT for r in rrset]


def tsig_key_setting(port: int, secrets: dict[str, str], algorithm: str) -> str:
    """A verification block's lines for the server on ``port`` and its key ``acme-<algorithm>``."""
    return (
        f"dns-server = 127.0.0.1:{port}\ntsig-key-name = acme-{algorithm}\n"
        f"tsig-key-secret = {secrets[algorithm]}\ntsig-algorithm = {algorithm}\n"
    )


def write_key_file(path: Path, name: str, secret: str) -> None:
    """A BIND key file (as tsig-keygen writes it) for an hmac-sha256 key."""
    path.write_text(f'key "{name}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')


def axfr_txt(zone: str, port: int, host: str = "127.0.0.1") -> list[tuple[str, str]]:
    """The TXT records of ``zone`` (name, value), by AXFR from the server on ``port``."""
    import dns.query
    import dns.rdatatype

    return sorted(
        (rrset.name.to_text(omit_final_dot=True), b"".join(r.strings).decode())
        for message in dns.query.xfr(host, zone, port=port, timeout=5, lifetime=10, relativize=False)
        for rrset in message.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for r in rrset
    )


class Pebble:
    """Pebble 2.10, the ACME test CA, with HTTP-01 checks sent to ``http_port`` on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        dns_port: int,
        http_port: int,
        *,
        eab_keys: dict[str, str] | None = None,
        nonce_reject: int = 0,
        profiles: dict[str, int] | None = None,
        va_sleep: bool = False,
        caa_identities: Sequence[str] = (),
    ) -> None:
        self.dir = directory
        self.caa_identities = tuple(caa_identities)  # the issuer domain names of dns-persist-01
        self.dns_port = dns_port
        self.http_port = http_port
        self.eab_keys = eab_keys
        self.nonce_reject = nonce_reject
        self.profiles = profiles
        self.va_sleep = va_sleep
        self.port = 0
        self.mgmt_port = 0
        self.tls_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "pebble.log"
        self.ca_bundle = directory / "tls" / "ca.pem"

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        binary = BIN / "pebble"
        if not binary.exists():
            raise ServiceError(f"{binary} is missing: run scripts/setup-system.sh (make test does)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.dir / "tls" / "cert.pem", self.dir / "tls" / "key.pem"
        if not self.port:  # a restart keeps its ports and TLS certificate
            _ca, cert, key = make_tls(self.dir / "tls", ("localhost", "pebble"))
            self.port, self.mgmt_port = free_port(), free_port()
            self.tls_port = free_port()
        config: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": self.eab_keys is not None,
        }
        if self.eab_keys is not None:
            config["externalAccountMACKeys"] = self.eab_keys
        if self.caa_identities:
            config["caaIdentities"] = list(self.caa_identities)
        if self.profiles is not None:
            config["profiles"] = {
                name: {"description": name, "validityPeriod": seconds} for name, seconds in self.profiles.items()
            }
        (self.dir / "pebble.json").write_text(json.dumps({"pebble": config}))
        env = dict(
            os.environ,
            PEBBLE_VA_NOSLEEP="0" if self.va_sleep else "1",
            PEBBLE_WFE_NONCEREJECT=str(self.nonce_reject),
            PEBBLE_AUTHZREUSE="0",
        )
        self.proc = spawn(
            [str(binary), "-config", str(self.dir / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            self.log,
            env,
        )
        wait_for(lambda: self.get("/dir", mgmt=False), waits.SERVICE_START, "Pebble", self.proc, self.log)
        return self

    def get(self, path: str, *, mgmt: bool = True) -> bytes:
        """GET from Pebble's management (or ACME) HTTPS port."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        port = self.mgmt_port if mgmt else self.port
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=5) as r:
            return bytes(r.read())

    def roots_pem(self) -> bytes:
        """Pebble's current root and intermediate (new at every start)."""
        return self.get("/roots/0") + b"\n" + self.get("/intermediates/0")

    def stop(self) -> None:
        _stop(self.proc)


class _Proxy:
    """A web server on ``port`` in front of acmems' challenge listeners on ``backends``."""

    log_name = "error.log"
    stop_signal = signal.SIGTERM

    def __init__(self, directory: Path, port: int, backends: Sequence[int], *, retry_404: bool = True) -> None:
        self.dir = directory
        self.port = port
        self.backends = backends
        self.retry_404 = retry_404  # False: plain round robin (a cluster: every acmems holds every token)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / self.log_name

    def stop(self) -> None:
        _stop(self.proc, self.stop_signal)


class Nginx(_Proxy):
    """nginx on ``port`` forwarding ``/.well-known/acme-challenge/`` to several backends, trying the
    next one on 404 (the seed's set-up for several acmems); with ``retry_404`` false, plain round
    robin (a cluster's instances all answer every token)."""

    stop_signal = signal.SIGQUIT  # graceful
    upstream = "acmems_challenges"  # the name docs/webservers.md uses

    def _server(self) -> str:
        """The ``server`` block, in front of ``upstream``."""
        return f"""  server {{
    listen 127.0.0.1:{self.port};
    location /.well-known/acme-challenge/ {{
      proxy_pass http://{self.upstream};
      proxy_set_header Host $host;
      proxy_next_upstream {"error timeout http_404" if self.retry_404 else "error timeout"};
      proxy_next_upstream_tries 0;
      proxy_connect_timeout 1s;
      proxy_read_timeout 3s;
    }}
    location / {{ return 404; }}
  }}"""

    def start(self) -> Nginx:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in self.backends)
        temp = "\n".join(f"  {k}_temp_path {d}/{k}_temp;" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (d / "nginx.conf").write_text(f"""
pid {d}/nginx.pid;
error_log {self.log} info;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
{temp}
  access_log {d}/access.log;
  upstream {self.upstream} {{
{servers}
  }}
{self._server()}
}}
""")
        command = [tool("nginx"), "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]
        self.proc = spawn(command, d / "stdout.log")
        wait_for(lambda: _connects(self.port), waits.SERVICE_START, "nginx", self.proc, self.log)
        return self


class NginxTls(Nginx):
    """nginx on ``port`` with TLS (``cert``, ``key``), sending each request to the next of
    ``backends`` (HTTPS) in turn: plain round robin per request, the client's Host passed on."""

    stop_signal = signal.SIGTERM
    upstream = "backends"

    def __init__(self, directory: Path, port: int, backends: Sequence[int], cert: Path, key: Path) -> None:
        super().__init__(directory, port, backends)
        self.cert, self.key = cert, key

    def _server(self) -> str:
        return f"""  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    location / {{
      proxy_pass https://{self.upstream};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}"""


def _connects(port: int, host: str = "127.0.0.1") -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


class Acmems:
    """acmems itself, as a real process: ``python -m acmems serve CONFIG``."""

    def __init__(self, directory: Path, config: str, mgmt_port: int) -> None:
        self.dir = directory
        self.config_text = config
        self.mgmt_port = mgmt_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "acmems.log"
        self.config = directory / "acmems.ini"

    def start(self, timeout: float = waits.START, env: dict[str, str] | None = None) -> Acmems:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text)
        self.proc = spawn(
            [sys.executable, "-m", "acmems", "serve", str(self.config)], self.log, dict(os.environ, **(env or {}))
        )
        try:
            wait_for(self._answers, timeout, "acmems", self.proc, self.log)
        except ServiceError:
            _stop(self.proc, signal.SIGKILL)
            raise
        return self

    def _answers(self) -> bool:
        """Whether /health answers at all (200 healthy, or 503 with the reason: either way, serving)."""
        url = f"http://127.0.0.1:{self.mgmt_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 503

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        _stop(self.proc, sig, timeout=40)
        return None if self.proc is None else self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Apache(_Proxy):
    """Apache httpd 2.4 (mod_proxy) on ``port`` forwarding the challenge path to acmems: with two
    backends, a 404 from the first is turned into an internal redirect to the second."""

    def start(self) -> Apache:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        modules = "/usr/lib/apache2/modules"
        recipe = [
            f'ProxyPass "/.well-known/acme-challenge/" "http://127.0.0.1:{self.backends[0]}/.well-known/acme-challenge/"',
            "ProxyPreserveHost On",
        ]
        if not self.retry_404:  # the cluster recipe: mod_proxy_balancer, round robin by requests
            members = "\n".join(f'    BalancerMember "http://127.0.0.1:{p}"' for p in self.backends)
            recipe = [
                f'<Proxy "balancer://acmems">\n{members}\n    ProxySet lbmethod=byrequests\n</Proxy>',
                'ProxyPass "/.well-known/acme-challenge/" "balancer://acmems/.well-known/acme-challenge/"',
                "ProxyPreserveHost On",
            ]
        elif len(self.backends) > 1:
            recipe += [
                '<Location "/.well-known/acme-challenge/">',
                "    ProxyErrorOverride On 404",
                '    ErrorDocument 404 "/acmems-2%{REQUEST_URI}"',
                "</Location>",
                f'ProxyPass "/acmems-2/.well-known/acme-challenge/" "http://127.0.0.1:{self.backends[1]}/.well-known/acme-challenge/"',
            ]
        (d / "httpd.conf").write_text(
            f"""
ServerRoot "{d}"
ServerName localhost
PidFile "{d}/httpd.pid"
Listen 127.0.0.1:{self.port}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule proxy_balancer_module {modules}/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module {modules}/mod_lbmethod_byrequests.so
LoadModule slotmem_shm_module {modules}/mod_slotmem_shm.so
User nobody
Group nogroup
ErrorLog "{self.log}"
LogLevel info
CustomLog "{d}/access.log" "%h %r %>s"
DocumentRoot "{d}"
# the recipe of docs/webservers.md
"""
            + "\n".join(recipe)
            + "\n"
        )
        self.proc = spawn([tool("apache2"), "-f", str(d / "httpd.conf"), "-DFOREGROUND"], (d / "stdout.log"))
        wait_for(lambda: _connects(self.port), waits.SERVICE_START, "apache", self.proc, d / "stdout.log")
        return self


class HAProxy(_Proxy):
    """HAProxy on ``port`` forwarding the challenge path to several acmems, retrying the next on 404."""

    log_name = "haproxy.log"

    def start(self) -> HAProxy:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"    server acmems{i} 127.0.0.1:{p}" for i, p in enumerate(self.backends))
        (d / "haproxy.cfg").write_text(f"""
global
    pidfile {d}/haproxy.pid
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend web
    bind 127.0.0.1:{self.port}
    use_backend acmems if {{ path_beg /.well-known/acme-challenge/ }}
    http-request return status 404 if !{{ path_beg /.well-known/acme-challenge/ }}
# the recipe of docs/webservers.md
backend acmems
    balance roundrobin
    retries 3
    option redispatch 1
    retry-on {"404 " if self.retry_404 else ""}conn-failure empty-response
{servers}
""")
        self.proc = spawn([tool("haproxy"), "-db", "-f", str(d / "haproxy.cfg")], self.log)
        wait_for(lambda: _connects(self.port), waits.SERVICE_START, "haproxy", self.proc, self.log)
        return self
