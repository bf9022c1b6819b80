"""Real ACME clients against acmems' ACME server ([acme-server]): certbot (PyPI, in the test venv),
lego and Caddy (Debian). Each runs as a direct child with its own state folder; the helpers return
what the client printed and the exit code."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests import ini
from tests.realservices import Pebble, free_port, make_tls, tool

__all__ = ["AcmeSite", "certbot", "eab_key", "lego", "run_client"]

CLIENT_TIMEOUT = 120.0  # one client run: a few seconds on an idle machine, the issuance included


def eab_key(hmac_key: str) -> str:
    """What ``acmems eab`` prints as the MAC key: the hmac_key's bytes, base64url without padding."""
    return base64.urlsafe_b64encode(hmac_key.encode()).rstrip(b"=").decode()


@dataclass
class AcmeSite:
    """One acmems with [acme-server]: its HTTPS port, the CA that signed the listener's certificate
    (``ca_file``, what clients trust) and its configuration pieces."""

    directory: Path
    port: int
    mgmt_port: int
    ca_file: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> AcmeSite:
        ca_file, cert, key = make_tls(directory / "listener-tls", ("localhost", "acmems.example.test"))
        return cls(directory, free_port(), free_port(), ca_file, cert, key)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/directory"

    def section(self, **extra: ini.Value | None) -> str:
        keys: dict[str, ini.Value | None] = {
            "listener": f"127.0.0.1:{self.port}",
            "certificate": self.cert,
            "key": self.key,
            "dir": self.directory / "acme-server",
        }
        return ini.section("acme-server", {**keys, **{k.replace("_", "-"): v for k, v in extra.items()}})

    def config(self, pebble: Pebble, *blocks: str, extra: Sequence[str] = (), **server: ini.Value | None) -> str:
        """A whole configuration: the session Pebble, HTTP-01 on its port, a file storage, ``blocks``."""
        return ini.ini(
            ini.account(pebble, self.directory / "account"),
            ini.mgmt(self.mgmt_port),
            ini.http01("http", pebble.http_port),
            ini.file_storage("file", self.directory / "storage"),
            *blocks,
            *extra,
            self.section(**server),
        )


def run_client(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def certbot(site: AcmeSite, state: Path, *args: str, directory: str | None = None) -> tuple[int, str]:
    """certbot with its folders under ``state``, against ``site`` (or ``directory``)."""
    binary = str(Path(sys.executable).with_name("certbot"))
    argv = [
        binary,
        "--config-dir",
        str(state / "conf"),
        "--work-dir",
        str(state / "work"),
        "--logs-dir",
        str(state / "logs"),
        "--server",
        directory or site.url,
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        *args,
    ]
    return run_client(argv, dict(os.environ, REQUESTS_CA_BUNDLE=str(site.ca_file)), state)


def certbot_issue(
    site: AcmeSite, state: Path, names: Sequence[str], *args: str, directory: str | None = None
) -> tuple[int, str]:
    """certonly for ``names``; the authorizations are valid already, so the manual hook never runs."""
    domains = [a for n in names for a in ("-d", n)]
    return certbot(
        site,
        state,
        "certonly",
        "--manual",
        "--preferred-challenges",
        "http",
        "--manual-auth-hook",
        "/bin/false",
        *domains,
        *args,
        directory=directory,
    )


def lego(site: AcmeSite, state: Path, *args: str, directory: str | None = None) -> tuple[int, str]:
    """lego with ``--path`` under ``state`` and a scratch working folder (it may create ./.lego)."""
    argv = [tool("lego"), "--server", directory or site.url, "--path", str(state / "lego"), "--accept-tos"]
    argv += ["--email", "ops@example.test", *args]
    env = dict(os.environ, LEGO_CA_CERTIFICATES=str(site.ca_file))
    return run_client(argv, env, state / "cwd")
