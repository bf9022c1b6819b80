"""Fixtures: the real services (BIND 9 with TSIG, Pebble 2.10, nginx) and acmems processes."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import settings

from tests import ini
from tests.ini import HMAC_KEY
from tests.realservices import Acmems, Bind, Pebble, free_port, missing_tools

# CI (CI=true) runs the property tests on a fixed sequence of examples: a counter-example found there
# by chance would fail a submission by chance. A developer's runs explore (random seeds; the local
# .hypothesis database replays what they found), and what they find becomes a test of its own.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

_RUNNING: list[tuple[str, Path]] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, naming the packages, when a program the tests run is not installed."""
    missing = missing_tools()
    if missing:
        listed = ", ".join(f"{name} (package {package})" for name, package in missing.items())
        raise pytest.UsageError(
            f"not installed: {listed}. `make test` installs them (scripts/setup-system.sh); "
            f"or: apt-get install {' '.join(sorted(set(missing.values())))}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Show the services' logs with every failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for name, log in _RUNNING:
            if log.exists():
                report.sections.append((f"log of {name} ({log})", log.read_text(errors="replace")[-4000:]))


@pytest.fixture(scope="session")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    server = Bind(tmp_path_factory.mktemp("bind")).start()
    _RUNNING.append(("named", server.log))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory, bind: Bind) -> Iterator[Pebble]:
    """Pebble whose HTTP-01 checks go to ``pebble.http_port``, where each test's acmems listens."""
    ca = Pebble(tmp_path_factory.mktemp("pebble"), bind.port, free_port()).start()
    _RUNNING.append(("pebble", ca.log))
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def account_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One account for the session Pebble: the first acmems registers it, later ones reuse it."""
    return tmp_path_factory.mktemp("account")


def base_config(pebble: Pebble, account_dir: Path, mgmt_port: int, storage: Path) -> str:
    """A configuration for the session Pebble: HTTP-01 on its port, a file cache, two auth blocks."""
    return ini.ini(
        ini.account(pebble, account_dir),
        ini.mgmt(mgmt_port, max_size="4k"),
        ini.http01("http", pebble.http_port),
        ini.file_storage("file", storage),
        ini.auth("local", ["*.example.test"], ip="127.0.0.1"),
        ini.auth("hmac", ["*.sub.example2.test"], hmac_key=HMAC_KEY),
    )


AcmemsFactory = Callable[..., Acmems]


@pytest.fixture
def acmems_factory(tmp_path: Path) -> Iterator[AcmemsFactory]:
    """Start acmems processes with a given configuration; all are stopped (by PID) afterwards."""
    started: list[Acmems] = []

    def start(config: str, mgmt_port: int, name: str = "acmems", env: dict[str, str] | None = None) -> Acmems:
        server = Acmems(tmp_path / name, config, mgmt_port).start(env=env)
        started.append(server)
        _RUNNING.append((name, server.log))
        return server

    yield start
    for server in started:
        server.stop()
        _RUNNING.remove((next(n for n, p in _RUNNING if p == server.log), server.log))


@pytest.fixture
def acmems(acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path) -> Acmems:
    """acmems with :func:`base_config` against the session Pebble."""
    port = free_port()
    return acmems_factory(base_config(pebble, account_dir, port, tmp_path / "storage"), port)


def make_csr(names: list[str], *, key: str = "ec", cn: bool = True) -> tuple[bytes, bytes]:
    """A PEM CSR for ``names`` (CN = first name unless ``cn`` is false) and its key, made in-process."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if key == "ec" else rsa.generate_private_key(65537, 2048)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if cn else [])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def hmac_header(body: bytes, key: str = HMAC_KEY, name: str = "sha256") -> str:
    return f"hmac name={name}, hash={hmac.new(key.encode(), body, hashlib.sha256).hexdigest()}"


def curl_post(
    url: str, body: bytes, headers: dict[str, str] | None = None, extra: list[str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """POST ``body`` with the real curl; returns (status, body, headers)."""
    args = ["curl", "-sS", "--max-time", "60", "-D", "-", "--data-binary", "@-", url]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    args += extra or []
    result = subprocess.run(args, input=body, capture_output=True, check=True, timeout=90)
    head, _, content = result.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, content = content.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    parsed = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return status, content, parsed


# ----------------------------------------------------------------------------- reliability figures

FULL = __import__("os").environ.get("ACMEMS_RELIABILITY") == "full"
FIGURES: dict[str, dict[str, object]] = {}


def metric(port: int, name: str) -> float:
    """The value of an unlabelled series on the /metrics of the acmems on ``port``."""
    text = curl_post(f"http://127.0.0.1:{port}/metrics", b"", extra=["-X", "GET"])[1].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


def record(test: str, **figures: object) -> None:
    """Keep figures of a reliability test for docs/reliability.md (written at the end of the run)."""
    FIGURES.setdefault(test, {}).update(figures)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FIGURES:
        import json

        out = Path(__file__).resolve().parent.parent / ".cache" / "reliability-figures.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"full": FULL, "figures": FIGURES}, indent=2, default=str) + "\n")
