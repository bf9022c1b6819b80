"""Real receivers of acmems' notifications for the tests: an HTTP server taking webhook POSTs, an
SMTP server (aiosmtpd) with STARTTLS and AUTH, and a command that appends its input to a file.
Each listens on a free loopback port and records what it got."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.realservices import free_port

__all__ = ["Hook", "MailServer", "command_receiver"]


class Hook:
    """Webhook receiver: ``answers`` is the status it gives (change it while running); ``posts``
    holds (headers, body) of every POST, in order."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self._arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Hook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.attempts += 1
                status = hook.status
                if status == 200:
                    with hook._arrived:
                        hook.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                        hook._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(body) for _, body in self.posts]
        return [e for e in found if kind is None or e["event"] == kind]

    def wait_any(self, timeout: float) -> bool:
        """Until one more POST arrives (True), or ``timeout`` passes (False): a pace for a loop that
        acts until an event comes, woken by the event itself."""
        with self._arrived:
            seen = len(self.posts)
            return self._arrived.wait_for(lambda: len(self.posts) > seen, timeout)

    def wait(self, kind: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        """Until ``count`` events of ``kind`` have arrived (woken by each POST)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.events(kind)) >= count, timeout):
                raise AssertionError(f"{count} {kind} event(s) expected within {timeout} s; got {self.events()}")
        return self.events(kind)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Controller(Controller):
    """aiosmtpd's controller, which also closes the sessions still open when it stops: its own
    stop ends the loop with them open, and their sockets are then closed by the garbage collector
    (a ResourceWarning in whichever test runs then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        session = SMTP(self.handler, **self.SMTP_kwargs)
        self.sessions.append(session)
        return session

    async def _close_sessions(self) -> None:
        for session in self.sessions:
            if isinstance(session.transport, asyncio.Transport):
                session.transport.abort()
        # abort() closes each socket in a callback of the next loop turns: run until all are lost
        for _ in range(1000):
            if all(session.transport is None for session in self.sessions):
                return
            await asyncio.sleep(0)  # not sync: one turn of this loop, for the callbacks above

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop).result(timeout=30)
        super().stop(no_assert)


class MailServer:
    """aiosmtpd on loopback with a self-signed certificate (``ca_file``). ``security``: ``starttls``
    (AUTH LOGIN/PLAIN for ``user``/``password`` required, and only after STARTTLS), ``tls`` (TLS from
    the first byte, no AUTH) or ``none`` (plain, no AUTH). The first ``refuse_first`` mails
    are answered 451 (try again later); ``refused`` counts them. ``bad_quit``: QUIT (after the mail
    was taken) is answered 421 instead of 221."""

    def __init__(
        self,
        directory: Path,
        user: str = "acmems",
        password: str = "s3cret-mail",  # noqa: S107
        security: str = "starttls",
        refuse_first: int = 0,
        bad_quit: bool = False,
    ) -> None:
        self.port = free_port()
        self.user, self.password = user, password
        self.ca_file, key_file = _self_signed(directory)
        self.mails: list[tuple[str, list[str], bytes]] = []
        self.refused = 0
        self._arrived = threading.Condition()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        server = self

        class Handler:
            async def handle_DATA(self, smtp: Any, session: Session, envelope: Envelope) -> str:
                if server.refused < refuse_first:
                    server.refused += 1
                    return "451 4.3.0 try again later"
                content = envelope.original_content or b""
                with server._arrived:
                    server.mails.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
                    server._arrived.notify_all()
                return "250 OK"

            async def handle_QUIT(self, smtp: Any, session: Session, envelope: Envelope) -> str:
                return "421 4.3.2 shutting down" if bad_quit else "221 Bye"

        def authenticate(smtp: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok)

        if security == "starttls":
            modes: dict[str, Any] = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        elif security == "tls":
            # AUTH is tested with STARTTLS: aiosmtpd counts TLS from the first byte as "no TLS" for AUTH
            modes = {"ssl_context": context, "auth_required": False}
        else:
            modes = {"auth_required": False}
        self._controller = _Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            **{"auth_required": True, **modes},
        )

    def start(self) -> MailServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait(self, count: int = 1, timeout: float = 60) -> list[tuple[str, list[str], bytes]]:
        """Until ``count`` mails have arrived (woken by each one)."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self.mails) >= count, timeout)
        assert arrived, f"{count} mail(s) expected within {timeout} s; got {len(self.mails)}"
        return self.mails


def command_receiver(directory: Path, fail_first: int = 0) -> tuple[str, Path]:
    """A command for ``type = command`` (its line) that appends each event to a file (returned),
    one JSON line each; it exits 1 for its first ``fail_first`` runs."""
    directory.mkdir(parents=True, exist_ok=True)
    out, script = directory / "events.jsonl", directory / "receive.py"
    counter = directory / "runs"
    script.write_text(
        "import sys, pathlib\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "runs = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(runs))\n"
        f"if runs <= {fail_first}:\n"
        "    sys.exit('receiver not ready')\n"
        "data = sys.stdin.buffer.read()\n"
        f"with open({str(out)!r}, 'ab') as f:\n"
        "    f.write(data + b'\\n')\n"
    )
    return f"{sys.executable} {script}", out
