"""The readers of ``[notify]`` (thresholds) and ``[notify "name"]`` (receivers); errors name file,
line, section and key (see docs/notify.md)."""

from __future__ import annotations

import ipaddress
import shlex
import socket
from pathlib import Path
from urllib.parse import urlsplit

from acmems.config.ini import Section
from acmems.config.sections import Keys
from acmems.config.values import email_address, nonempty, positive_int, positive_number, read_secret_file
from acmems.core.event_kinds import DEFAULT_EVENTS, EventKind, parse_events
from acmems.core.settings import CommandReceiver, EmailReceiver, ReceiverSettings, WebhookReceiver
from acmems.core.thresholds import Span, Thresholds, parse_span

__all__ = ["read_notify_defaults", "read_receiver"]

RECEIVER_TYPES = ("webhook", "email", "command")
_SECURITY = ("starttls", "tls", "none")


def _repeat(value: str) -> float:
    if value.strip() == "0":
        return 0.0
    span = parse_span(value)
    if span.share:
        raise ValueError(f"{value!r} is not a time; write 30m, 1h, 1d (or 0: an event for every failure)")
    return span.value


def read_notify_defaults(keys: Keys) -> tuple[Thresholds, float, int, float]:
    """``[notify]``: the thresholds, ``check-interval``, ``metrics-certificates`` and ``repeat-failed``."""
    base = Thresholds()

    def span(key: str, default: Span) -> Span:
        return keys.value(key, parse_span, default)

    thresholds = Thresholds(
        overdue_grace=span("overdue-grace", base.overdue_grace),
        expiring_left=span("expiring", base.expiring_left),
        pickup_grace=span("not-picked-up-grace", base.pickup_grace),
        remind_every=span("remind-every", base.remind_every),
    )
    return (
        thresholds,
        keys.value("check-interval", positive_number, 60.0),
        keys.value("metrics-certificates", positive_int, 10_000),
        keys.value("repeat-failed", _repeat, 3600.0),
    )


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _smtp_server(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "587"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. mail.example.org:587)")
    return host, int(port)


def _on_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _command(value: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot split {value!r} into words: {exc}") from None
    if not argv:
        raise ValueError("must name a program")
    if not Path(argv[0]).is_absolute():
        raise ValueError(f"{argv[0]!r}: give the program's absolute path (it runs without a shell)")
    return argv


def _first_type(section: Section) -> str:
    if not section.entries or section.entries[0].key != "type":
        raise section.error(f"the first key must be 'type' (one of: {', '.join(RECEIVER_TYPES)})", key="type")
    value = section.entries[0].value
    if value not in RECEIVER_TYPES:
        raise section.error(
            f"unknown type {value!r}; valid types: {', '.join(RECEIVER_TYPES)}", key="type", entry=section.entries[0]
        )
    return value


def read_receiver(section: Section, keys: Keys) -> ReceiverSettings:
    """``[notify "name"]``: a webhook, an e-mail address list, or a command."""
    assert section.name is not None
    kind = _first_type(section)
    keys.known.add("type")
    events = keys.value("events", parse_events, DEFAULT_EVENTS)
    if kind == "webhook":
        return _webhook(section, keys, section.name, events)
    if kind == "command":
        command = keys.one("command")
        if command is None:
            raise section.error("a command receiver needs 'command = /path/to/program'", key="command")
        return CommandReceiver(section.name, keys.convert(command, _command), events)
    return _email(section, keys, section.name, events)


def _webhook(section: Section, keys: Keys, name: str, events: frozenset[EventKind]) -> WebhookReceiver:
    url = keys.one("url")
    if url is None:
        raise section.error("a webhook needs 'url = https://...'", key="url")
    secret_file = keys.one("secret-file")
    secret = None
    if secret_file is not None:
        secret = keys.convert(secret_file, lambda v: read_secret_file(Path(v)).encode())
    return WebhookReceiver(
        name,
        keys.convert(url, _webhook_url),
        secret,
        None if secret_file is None else secret_file.value,
        events,
    )


def _email(section: Section, keys: Keys, name: str, events: frozenset[EventKind]) -> EmailReceiver:
    server = keys.one("smtp-server")
    if server is None:
        raise section.error("an email receiver needs 'smtp-server = host:port'", key="smtp-server")
    host, port = keys.convert(server, _smtp_server)
    security = keys.value("security", nonempty, "starttls")
    if security not in _SECURITY:
        entry = keys.one("security")
        assert entry is not None
        raise section.error(f"{security!r} is not one of: {', '.join(_SECURITY)}", key="security", entry=entry)
    if security == "none" and not _on_loopback(host):
        entry = keys.one("security")
        assert entry is not None
        raise section.error(
            f"security = none sends mail unencrypted; allowed only to a server on loopback, not {host}",
            key="security",
            entry=entry,
        )
    sender = keys.one("from")
    to = keys.values("to", email_address)
    if sender is None or not to:
        raise section.error(
            "an email receiver needs 'from = ...' and at least one 'to = ...'", key="from" if sender is None else "to"
        )
    username = keys.value("username", nonempty, None)
    password_file = keys.one("password-file")
    password = None if password_file is None else keys.convert(password_file, lambda v: read_secret_file(Path(v)))
    keys.together("username", "password-file", (username, password))
    ca_file = keys.one("ca-file")
    if ca_file is not None and not Path(ca_file.value).is_file():
        raise section.error(f"ca-file {ca_file.value} does not exist", key="ca-file", entry=ca_file)
    return EmailReceiver(
        name,
        host,
        port,
        keys.convert(sender, email_address),
        tuple(to),
        security,
        username,
        password,
        None if password_file is None else password_file.value,
        None if ca_file is None else ca_file.value,
        events,
    )
