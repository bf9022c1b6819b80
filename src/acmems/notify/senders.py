"""Delivering one event to one receiver: a webhook POST, a mail, or a command.

Each sender's :meth:`send` returns when the receiver took the event, or raises
:class:`DeliveryError` with one line saying why (never a secret). They never follow redirects and
never wait longer than their timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiohttp

from acmems.core.settings import CommandReceiver, EmailReceiver, ReceiverSettings, WebhookReceiver
from acmems.notify.mail_text import mail_body, mail_subject
from acmems.notify.outbox import Pending

__all__ = ["DeliveryError", "Sender", "make_sender", "signature"]

WEBHOOK_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0
MAIL_TIMEOUT = 30.0


class DeliveryError(Exception):
    """The receiver did not take the event; ``str()`` is one line."""


class Sender(Protocol):
    async def send(self, pending: Pending) -> None: ...

    async def close(self) -> None: ...


def signature(secret: bytes, body: bytes) -> str:
    """``X-Acmems-Signature``: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSender:
    """One POST per event, ``application/json``; a 2xx answer means delivered."""

    def __init__(self, settings: WebhookReceiver) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def send(self, pending: Pending) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        headers = {"Content-Type": "application/json", "X-Acmems-Event": pending.kind, "X-Acmems-Id": pending.id}
        if self.settings.secret is not None:
            headers["X-Acmems-Signature"] = signature(self.settings.secret, pending.body)
        try:
            async with self._session.post(
                self.settings.url, data=pending.body, headers=headers, allow_redirects=False
            ) as answer:
                if not 200 <= answer.status < 300:
                    where = f" to {answer.headers.get('Location')}" if 300 <= answer.status < 400 else ""
                    raise DeliveryError(f"HTTP {answer.status} {answer.reason or ''}{where}".rstrip())
        except TimeoutError:
            raise DeliveryError(f"no answer within {WEBHOOK_TIMEOUT:g} s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# What a command receiver inherits from acmems' environment: where programs are, the locale, the
# time zone, who and where it runs. Nothing else (database passwords, NOTIFY_SOCKET, ...) reaches it.
COMMAND_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def command_environment(pending: Pending) -> dict[str, str]:
    """The environment of one run: :data:`COMMAND_ENVIRONMENT` and ``LC_*`` taken over, plus
    ``ACMEMS_EVENT`` (its kind) and ``ACMEMS_EVENT_ID``."""
    inherited = {key: value for key, value in os.environ.items() if key in COMMAND_ENVIRONMENT or key.startswith("LC_")}
    inherited.setdefault("PATH", DEFAULT_PATH)
    return {**inherited, "ACMEMS_EVENT": pending.kind, "ACMEMS_EVENT_ID": pending.id}


class CommandSender:
    """Runs the command with the event's JSON on standard input and a small environment
    (:func:`command_environment`); exit status 0 means delivered."""

    def __init__(self, settings: CommandReceiver) -> None:
        self.settings = settings

    async def send(self, pending: Pending) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.settings.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=command_environment(pending),
            )
        except OSError as exc:
            raise DeliveryError(f"cannot run {self.settings.argv[0]}: {exc.strerror}") from None
        try:
            _, err = await asyncio.wait_for(process.communicate(pending.body), COMMAND_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise DeliveryError(f"{self.settings.argv[0]} did not finish within {COMMAND_TIMEOUT:g} s") from None
        if process.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise DeliveryError(
                f"{self.settings.argv[0]} exited with status {process.returncode}" + (f": {said[-1]}" if said else "")
            )

    async def close(self) -> None:
        """Nothing kept open."""


class MailSender:
    """One mail per event by SMTP (STARTTLS, TLS, or plain to a server on loopback); 250 means delivered."""

    def __init__(self, settings: EmailReceiver) -> None:
        self.settings = settings

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        return context

    def _message(self, pending: Pending) -> EmailMessage:
        fields = json.loads(pending.body)
        message = EmailMessage()
        message["Subject"] = mail_subject(fields)
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.to)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid("acmems." + pending.id)
        message["X-Acmems-Id"] = pending.id
        message.set_content(mail_body(fields))
        return message

    def _send_blocking(self, pending: Pending) -> None:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=MAIL_TIMEOUT, context=self._context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=MAIL_TIMEOUT)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.username is not None and s.password is not None:
                smtp.login(s.username, s.password)
            smtp.send_message(self._message(pending))
        finally:
            _goodbye(smtp)

    async def send(self, pending: Pending) -> None:
        try:
            await asyncio.to_thread(self._send_blocking, pending)
        except smtplib.SMTPAuthenticationError as exc:
            who = self.settings.username
            raise DeliveryError(f"the SMTP server refused the login of {who!r}: {exc.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the SMTP server refused the recipients {', '.join(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"the SMTP server answered {exc.smtp_code}: {_text(exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(f"{self.settings.host} does not offer STARTTLS (security = starttls)") from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"the certificate of {self.settings.host}:{self.settings.port} is not trusted ({exc.verify_message}); "
                "set ca-file to the CA that signed it"
            ) from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with {self.settings.host}:{self.settings.port} failed: {exc.reason}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{self.settings.host}:{self.settings.port}: {exc}".splitlines()[0]) from None

    async def close(self) -> None:
        """A connection per mail: nothing kept open."""


def _goodbye(smtp: smtplib.SMTP) -> None:
    """QUIT, then close; what the server answers to QUIT (an error, a TLS connection cut) changes
    nothing: a mail it took (250 for DATA) is delivered, and reporting it as failed would send it twice."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _text(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def make_sender(settings: ReceiverSettings) -> Sender:
    if isinstance(settings, WebhookReceiver):
        return WebhookSender(settings)
    if isinstance(settings, EmailReceiver):
        return MailSender(settings)
    return CommandSender(settings)
