"""``[notify]``, ``[notify "name"]`` and ``[mgmt] admin-ip``: what the configuration accepts, what
it refuses (naming file, line and key), and what ``acmems check`` shows (never a secret)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from acmems.config import settings_from_sources
from acmems.config.describe import describe_settings
from acmems.core.settings import LOOPBACK, CommandReceiver, EmailReceiver, Settings, WebhookReceiver
from acmems.core.thresholds import Span
from acmems.errors import ConfigError

BASE = "[account]\ndir = /x\n"


def load(text: str) -> Settings:
    return settings_from_sources([("test.ini", BASE + text)])


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value


def test_three_receivers_and_thresholds(tmp_path: Path) -> None:
    secret, password = tmp_path / "hook.secret", tmp_path / "smtp.pw"
    secret.write_text("hook-s3cret\n \n")
    password.write_text("mail-s3cret\n")
    settings = load(
        "[notify]\noverdue-grace = 10%\nremind-every = 12h\ncheck-interval = 5\n"
        f'[notify "ops"]\ntype = webhook\nurl = https://hooks.example.org/acmems?token=tok3n\nsecret-file = {secret}\n'
        "events = failed overdue\n"
        f'[notify "mail"]\ntype = email\nsmtp-server = mail.example.org:587\nusername = acmems\n'
        f"password-file = {password}\nfrom = acmems@example.org\nto = ops@example.org\nto = oncall@example.org\n"
        '[notify "script"]\ntype = command\ncommand = /usr/local/bin/acmems-event --quiet\n'
    )
    ops, mail, script = settings.notify.receivers
    assert isinstance(ops, WebhookReceiver) and ops.secret == b"hook-s3cret" and ops.events == {"failed", "overdue"}
    assert isinstance(mail, EmailReceiver) and mail.password == "mail-s3cret" and mail.security == "starttls"
    assert mail.to == ("ops@example.org", "oncall@example.org") and mail.port == 587
    assert isinstance(script, CommandReceiver) and script.argv == ("/usr/local/bin/acmems-event", "--quiet")
    assert script.events == {"failed", "overdue", "expiring", "not-picked-up"}  # the default: all but issued
    t = settings.notify.thresholds
    assert t.overdue_grace == Span(0.10) and t.remind_every == Span(43200, share=False)
    assert settings.notify.check_interval == 5
    shown = describe_settings(settings)
    assert '[notify "ops"] type = webhook url = https://hooks.example.org/acmems?********' in shown
    assert '[notify "mail"] type = email smtp-server = mail.example.org:587 security = starttls' in shown
    for secret_text in ("hook-s3cret", "mail-s3cret", "tok3n"):
        assert secret_text not in shown


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        (
            '[notify "x"]\ntype = webhook\nurl = https://h.example.org/\nevents = failed, expired\n',
            "events",
            "valid events: issued, failed, overdue, expiring, not-picked-up",
        ),
        ('[notify "x"]\ntype = webhook\nurl = https://h.example.org/\nevents =\n', "events", "names no event"),
        (
            '[notify "x"]\ntype = webhook\nurl = https://h.example.org/\nsecret-file = /nonexistent/s\n',
            "secret-file",
            "/nonexistent/s",
        ),
        ('[notify "x"]\ntype = webhook\nurl = ftp://h.example.org/\n', "url", "http:// or https://"),
        ('[notify "x"]\ntype = pager\n', "type", "valid types: webhook, email, command"),
        ('[notify "x"]\ntype = command\ncommand = acmems-event\n', "command", "absolute path"),
        (
            '[notify "x"]\ntype = email\nsmtp-server = mail.example.org:25\nsecurity = none\nfrom = a@example.org\n'
            "to = b@example.org\n",
            "security",
            "only to a server on loopback",
        ),
        ('[notify "x"]\ntype = email\nsmtp-server = mail.example.org\nfrom = a@example.org\n', "to", "at least one"),
        ("[notify]\noverdue-grace = 5\n", "overdue-grace", "a share is at most 1"),
        ("[mgmt]\nadmin-ip = 10.0.0.300\n", "admin-ip", "not an IP address or network"),
    ],
)
def test_errors_name_the_line_and_what_is_valid(text: str, key: str, says: str) -> None:
    problem = error(text)
    assert problem.key == key and problem.file == "test.ini" and problem.line is not None
    assert says in problem.message


def test_an_empty_secret_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty.secret"
    empty.write_text("\n  \n")
    problem = error(f'[notify "x"]\ntype = webhook\nurl = https://h.example.org/\nsecret-file = {empty}\n')
    assert str(empty) in problem.message and "empty" in problem.message


def test_plain_smtp_to_loopback_is_allowed_and_admin_ip_defaults_to_loopback() -> None:
    settings = load(
        '[notify "x"]\ntype = email\nsmtp-server = 127.0.0.1:25\nsecurity = none\nfrom = a@example.org\n'
        "to = b@example.org\n"
    )
    assert settings.notify.receivers[0].type == "email"
    assert settings.mgmt.admin_ip == LOOPBACK
    opened = load("[mgmt]\nadmin-ip = 0.0.0.0/0\nadmin-ip = ::/0\n")
    assert opened.mgmt.admin_ip == (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0AAA/B0BBB/XXXXsecretXXXX", "https://hooks.slack.com/services/********"),
        (
            "https://acme.webhook.office.com/webhookb2/1234@5678/IncomingWebhook/abcdef/9999",
            "https://acme.webhook.office.com/webhookb2/********",
        ),
        ("https://user:pw@hooks.example.org:8443/acmems", "https://user:********@hooks.example.org:8443/acmems"),
        ("https://hooks.example.org", "https://hooks.example.org"),
        ("https://hooks.example.org/", "https://hooks.example.org/"),
    ],
)
def test_check_shows_no_token_a_webhook_url_keeps_in_its_path(tmp_path: Path, url: str, shown: str) -> None:
    settings = load(f'[notify "chat"]\ntype = webhook\nurl = {url}\n')
    text = describe_settings(settings)
    assert f"url = {shown} " in text
    for secret_text in ("XXXXsecretXXXX", "1234@5678", "abcdef", ":pw@"):
        assert secret_text not in text
