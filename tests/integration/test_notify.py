"""Notifications (``[notify "name"]``): events to a real webhook receiver, a real SMTP server with
STARTTLS and AUTH, and a command; against a real Pebble."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests import ini, waits
from tests.conftest import AcmemsFactory, curl_post, make_csr, metric
from tests.gates import HttpGate
from tests.realservices import Acmems, Bind, Pebble, free_port, tool, wait_for
from tests.receivers import Hook, MailServer, command_receiver

pytestmark = pytest.mark.integration
SECRET = "webhook-secret-value"
OUTPUT = Path(__file__).resolve().parents[2] / ".cache" / "test-output"  # the status page's screenshot


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook().start()
    yield receiver
    receiver.stop()


def _notify(name: str, **keys: ini.Value | None) -> str:
    return ini.section(f'notify "{name}"', {k.replace("_", "-"): v for k, v in keys.items()})


def _config(ca: Pebble, tmp_path: Path, port: int, *extra: str, mgmt: dict[str, ini.Value] | None = None) -> str:
    return ini.ini(
        ini.account(ca, tmp_path / "account"),
        ini.mgmt(port, **(mgmt or {})),
        ini.http01("http", ca.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test"], ip="127.0.0.0/8"),
        *extra,
    )


def _sign(server: Acmems, names: list[str], csr: bytes | None = None, source: str = "127.0.0.1") -> tuple[int, bytes]:
    body = csr if csr is not None else make_csr(names)[0]
    status, answer, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", body, extra=["--interface", source])
    return status, answer


def _leaf(chain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(chain)


def test_issued_goes_to_webhook_mail_and_command_and_a_cache_hit_sends_nothing(
    acmems_factory: AcmemsFactory, pebble: Pebble, hook: Hook, tmp_path: Path
) -> None:
    secret = tmp_path / "webhook.secret"
    secret.write_text(SECRET + "\n\n")  # trailing whitespace is not part of the key
    mail = MailServer(tmp_path / "smtp").start()
    password = tmp_path / "smtp-password"
    password.write_text(mail.password + "\n")
    command, received = command_receiver(tmp_path / "cmd")
    port = free_port()
    config = _config(
        pebble,
        tmp_path,
        port,
        _notify("ops", type="webhook", url=hook.url, secret_file=secret, events="issued, failed"),
        _notify(
            "mail",
            type="email",
            smtp_server=f"127.0.0.1:{mail.port}",
            security="starttls",
            username=mail.user,
            password_file=password,
            ca_file=mail.ca_file,
            **{"from": "acmems@example.test"},
            to=["ops@example.test", "oncall@example.test"],
            events="issued",
        ),
        _notify("script", type="command", command=command, events="issued"),
    )
    try:
        server = acmems_factory(config, port)
        csr, _ = make_csr(["Notify.example.test", "www.notify.example.test"])
        status, chain = _sign(server, [], csr)
        assert status == 200, chain
        leaf = _leaf(chain)
        (event,) = hook.wait("issued")
        assert event["names"] == ["notify.example.test", "www.notify.example.test"]  # lower case, the CSR's order
        assert event["serial"] == format(leaf.serial_number, "x")
        assert event["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert event["renewal"] is False and event["block"] == "local" and event["profile"] is None
        assert len(event["id"]) >= 16 and event["time"].endswith("Z")
        headers, body = hook.posts[0]
        assert headers["content-type"] == "application/json"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-acmems-signature"], expected)
        mails = mail.wait(1)
        sender, recipients, text = mails[0]
        assert sender == "acmems@example.test" and recipients == ["ops@example.test", "oncall@example.test"]
        message = email.message_from_bytes(text, policy=email.policy.default)
        assert (
            message["Subject"].strip() == "[acmems] certificate issued for notify.example.test, www.notify.example.test"
        )
        content = message.get_content()
        assert format(leaf.serial_number, "x") in content and event["not_after"] in content
        wait_for(lambda: received.exists() and received.read_text().strip(), waits.PROMPT, "the command's event")
        assert json.loads(received.read_text().splitlines()[0])["id"] == event["id"]
        status, again = _sign(server, [], csr)  # a cache hit
        assert status == 200 and again == chain
        # A later issuance is the marker: each receiver gets its events in order, so once the later
        # one is there, anything the cache hit had sent would be there before it.
        assert _sign(server, ["later.example.test"])[0] == 200
        hook.wait("issued", 2, timeout=waits.PROMPT)
        mail.wait(2)
        wait_for(lambda: len(received.read_text().splitlines()) == 2, waits.PROMPT, "the command's second event")
        assert [e["names"] for e in hook.events()] == [
            ["notify.example.test", "www.notify.example.test"],
            ["later.example.test"],
        ]
        assert len(hook.posts) == 2 and len(mail.mails) == 2 and len(received.read_text().splitlines()) == 2
        log = server.log_text()
        assert SECRET not in log and mail.password not in log
    finally:
        mail.stop()


@pytest.mark.slow
@pytest.mark.parametrize("security", ["tls", "none"])
def test_mail_over_tls_or_plain_to_loopback_and_a_refused_mail_or_failed_command_is_tried_again(
    acmems_factory: AcmemsFactory, pebble: Pebble, tmp_path: Path, security: str
) -> None:
    # TLS from the first byte, or plain (allowed to a server on loopback only); the mail
    # server answers the first mail 451 and the command exits 1 once: both get the event on a retry.
    mail = MailServer(tmp_path / "smtp", security=security, refuse_first=1).start()
    command, received = command_receiver(tmp_path / "cmd", fail_first=1)
    trust: dict[str, ini.Value | None] = {"ca_file": mail.ca_file} if security == "tls" else {}
    port = free_port()
    config = _config(
        pebble,
        tmp_path,
        port,
        _notify(
            "mail",
            type="email",
            smtp_server=f"127.0.0.1:{mail.port}",
            security=security,
            **trust,
            **{"from": "acmems@example.test"},
            to="ops@example.test",
            events="issued",
        ),
        _notify("script", type="command", command=command, events="issued"),
    )
    try:
        server = acmems_factory(config, port)
        assert _sign(server, [f"{security}.example.test"])[0] == 200
        ((sender, recipients, text),) = mail.wait(1, timeout=waits.RETRY)
        assert mail.refused == 1 and sender == "acmems@example.test" and recipients == ["ops@example.test"]
        assert f"{security}.example.test" in text.decode()
        wait_for(lambda: received.exists() and received.read_text().strip(), waits.RETRY, "the command's event")
        (line,) = received.read_text().splitlines()
        assert json.loads(line)["names"] == [f"{security}.example.test"]
        assert (tmp_path / "cmd" / "runs").read_text() == "2"  # failed once, then delivered
        log = server.log_text()
        assert "notify mail: " in log and "notify script: " in log and log.count("not delivered") >= 2
    finally:
        mail.stop()


def test_failed_carries_the_ca_s_problem_once_per_repeat_failed_for_a_failed_validation_and_a_ca_that_is_down(
    acmems_factory: AcmemsFactory, bind: Bind, hook: Hook, tmp_path: Path
) -> None:
    # Pebble checks HTTP-01 on a port where nothing listens: the validation fails.
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    port = free_port()
    config = ini.ini(
        ini.account(ca, tmp_path / "account"),
        ini.mgmt(port),
        ini.http01("http", free_port()),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test"], ip="127.0.0.1"),
        _notify("ops", type="webhook", url=hook.url),
    )
    try:
        server = acmems_factory(config, port)
        status, body = _sign(server, ["refused.example.test"])
        assert status == 421, body
        (event,) = hook.wait("failed")
        assert event["names"] == ["refused.example.test"] and event["block"] == "local"
        assert "connection" in event["error"] and "\n" not in event["error"]
        # The client tries again and again: one event per block and names per repeat-failed (1h).
        for _ in range(2):
            assert _sign(server, ["refused.example.test"])[0] == 421
        wait_for(lambda: metric(port, "acmems_notify_failed_held_total") == 2, waits.PROMPT, "two held back")
        assert len(hook.events("failed")) == 1
        ca.stop()
        status, body = _sign(server, ["down.example.test"])
        assert status == 503, body
        events = hook.wait("failed", 2)
        assert events[1]["names"] == ["down.example.test"]
        assert "cannot be reached" in events[1]["error"]
        assert not hook.events("issued")  # not selected: the default filter leaves issued out
    finally:
        ca.stop()


@pytest.mark.slow
def test_a_receiver_answering_500_or_down_gets_the_event_later_also_after_a_restart_and_never_twice(
    acmems_factory: AcmemsFactory, pebble: Pebble, tmp_path: Path
) -> None:
    hook = Hook().start()
    hook.status = 500
    port = free_port()
    config = _config(pebble, tmp_path, port, _notify("ops", type="webhook", url=hook.url, events="issued"))
    try:
        server = acmems_factory(config, port)
        assert _sign(server, ["retry.example.test"])[0] == 200
        wait_for(lambda: hook.attempts >= 1, waits.PROMPT, "the first attempt")
        hook.status = 200
        (first,) = hook.wait("issued", timeout=waits.RETRY)  # the retry
        assert "not delivered (HTTP 500" in server.log_text()
        # The receiver is down; acmems stops with the event undelivered and starts again.
        hook.stop()
        assert _sign(server, ["restart.example.test"])[0] == 200
        wait_for(
            lambda: "restart.example.test" in server.log_text() and "next try in" in server.log_text(),
            waits.PROMPT,
            "a failed try",
        )
        server.stop()
        pending = list((tmp_path / "account" / "notify-outbox" / "ops").glob("*.json"))
        assert len(pending) == 1
        kept = json.loads(pending[0].read_text())["body"].encode()
        hook.start()
        server.start()
        events = hook.wait("issued", 2, timeout=waits.RETRY)
        assert events[0]["id"] == first["id"] and events[1]["names"] == ["restart.example.test"]
        assert hook.posts[1][1] == kept  # byte for byte what was kept
        # Nothing is sent twice: the outbox empties (nothing left to retry), and a later event comes
        # right after the two, with nothing between.
        outbox = tmp_path / "account" / "notify-outbox" / "ops"
        wait_for(lambda: not list(outbox.glob("*.json")), waits.PROMPT, "the outbox emptied")
        assert _sign(server, ["marker.example.test"])[0] == 200
        events = hook.wait("issued", 3, timeout=waits.PROMPT)
        assert [e["names"] for e in events] == [
            ["retry.example.test"],
            ["restart.example.test"],
            ["marker.example.test"],
        ]
    finally:
        hook.stop()


@pytest.fixture
def short_ca(bind: Bind, tmp_path: Path) -> Iterator[Pebble]:
    """A Pebble whose ``short`` profile gives 30-second certificates (renewal point after 20 s)."""
    ca = Pebble(tmp_path / "short-pebble", bind.port, free_port(), profiles={"default": 90 * 86400, "short": 30})
    ca.start()
    yield ca
    ca.stop()


def _short_config(
    ca: Pebble, tmp_path: Path, port: int, hook: Hook, listener: int | None = None, **notify: ini.Value
) -> str:
    return ini.ini(
        ini.account(ca, tmp_path / "account"),
        ini.mgmt(port, renewal_interval=1),
        ini.http01("http", ca.http_port if listener is None else listener),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("short", ["*.example.test"], ip="127.0.0.0/8", profile="short"),
        ini.section("notify", {"check-interval": 1, "remind-every": "10m", **notify}),
        _notify("ops", type="webhook", url=hook.url, events="issued failed overdue expiring not-picked-up"),
    )


def _time(value: str) -> float:
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


@pytest.mark.slow
def test_overdue_and_expiring_when_the_ca_is_gone_and_clients_keep_asking(
    acmems_factory: AcmemsFactory, short_ca: Pebble, hook: Hook, tmp_path: Path
) -> None:
    port = free_port()
    server = acmems_factory(_short_config(short_ca, tmp_path, port, hook, **{"repeat-failed": 0}), port)
    csr, _ = make_csr(["overdue.example.test"])
    status, chain = _sign(server, [], csr)
    assert status == 200, chain
    leaf = _leaf(chain)
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    renewal_point = leaf.not_valid_after_utc.timestamp() - lifetime / 3
    short_ca.stop()
    # Clients keep asking (one request a second, paced by the wait for the event): while the old
    # certificate is valid they get it. A request after its expiry would be a renewal that cannot
    # reach the CA, so the clients stop asking a second before it.
    expires = leaf.not_valid_after_utc.timestamp()
    asked = 0
    while not hook.events("expiring"):
        if time.time() < expires - 1:
            status, answer = _sign(server, [], csr)  # the old certificate, while it is valid
            assert status == 200 and answer == chain
            asked += 1
        assert time.time() < expires + waits.PROMPT, f"no expiring event by the expiry; got {hook.events()}"
        hook.wait_any(1.0)
    assert asked > 0
    (overdue,) = hook.events("overdue")
    (expiring,) = hook.events("expiring")
    assert overdue["names"] == ["overdue.example.test"] and overdue["serial"] == format(leaf.serial_number, "x")
    # past the renewal point (the lifetime rule, or the CA's ARI window) plus the grace
    assert abs(_time(overdue["renewal_point"]) - renewal_point) <= lifetime / 3
    assert _time(overdue["time"]) >= int(_time(overdue["renewal_point"]) + 0.05 * lifetime)
    assert _time(expiring["time"]) >= int(leaf.not_valid_after_utc.timestamp() - 0.10 * lifetime)
    failed = hook.events("failed")
    assert len(failed) >= 2  # one per renewal attempt (the clients' and the renewer's): repeat-failed = 0
    assert all("cannot be reached" in event["error"] for event in failed)
    assert all(_time(event["time"]) >= int(renewal_point) for event in failed)
    assert any("attempt" in event and "next_attempt" in event for event in failed)  # the renewer's
    assert overdue["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.slow
def test_a_certificate_no_block_allows_any_more_is_not_renewed_and_the_operators_are_told(
    acmems_factory: AcmemsFactory, short_ca: Pebble, hook: Hook, tmp_path: Path
) -> None:
    # The block is narrowed after a compromise: its old certificate is served until it expires, but
    # the renewer does not renew it; the log says so once, an event tells the operators, /status shows it.
    port = free_port()
    config = _short_config(short_ca, tmp_path, port, hook)
    server = acmems_factory(config, port)
    assert server.proc is not None
    status, chain = _sign(server, ["revoked-team.example.test"])
    assert status == 200, chain
    leaf = _leaf(chain)
    issued = short_ca.log.read_text().count("Issued certificate serial")
    server.config.write_text(config.replace("domain = *.example.test", "domain = *.other.example.test"))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in server.log_text(), waits.PROMPT, "reload")
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    (event,) = hook.wait("failed", timeout=lifetime + waits.PROMPT)
    assert event["names"] == ["revoked-team.example.test"]
    assert event["error"] == "not renewed: no auth block allows revoked-team.example.test (storage file)"
    page = curl_post(f"http://127.0.0.1:{port}/status", b"", extra=["-X", "GET"])[1].decode()
    assert "not renewed: no auth block allows revoked-team.example.test" in page
    log = server.log_text()
    assert log.count("not renewed: no auth block allows revoked-team.example.test") == 1
    assert short_ca.log.read_text().count("Issued certificate serial") == issued


@pytest.mark.slow
def test_not_picked_up_names_the_client_that_fetched_the_old_one_until_it_fetches_the_new(
    acmems_factory: AcmemsFactory, short_ca: Pebble, hook: Hook, tmp_path: Path
) -> None:
    # The CA's HTTP-01 checks pass a gate: after the first certificate it is closed, so exactly one
    # renewal (the one let through) is validated; a further one (Pebble's ARI may call the new
    # certificate due at once) waits at the gate and never replaces it.
    port, listener = free_port(), free_port()
    with HttpGate(short_ca.http_port, listener, closed=False) as gate:
        # not-picked-up-grace: the event comes that long after the renewal, not at once
        config = _short_config(short_ca, tmp_path, port, hook, listener, **{"not-picked-up-grace": "6s"})
        server = acmems_factory(config, port)
        csr, _ = make_csr(["pickup.example.test"])
        status, old = _sign(server, [], csr, source="127.0.0.2")  # client A
        assert status == 200, old
        gate.close()
        assert gate.wait_held(1, waits.after(10.0, 20.0)), "the renewal (its point after 20 s) validating"
        gate.allow(gate.held[0])
        events = hook.wait("issued", 2, timeout=waits.ISSUANCE)
        renewed = [e for e in events if e["renewal"]]
        assert len(renewed) == 1 and renewed[0]["serial"] != format(_leaf(old).serial_number, "x")
        status, new = _sign(server, [], csr, source="127.0.0.3")  # client B: only ever had the new one
        assert status == 200 and new != old
        assert format(_leaf(new).serial_number, "x") == renewed[0]["serial"]
        (event,) = hook.wait("not-picked-up", timeout=waits.after(5.0, 6.0))
        assert event["client"] == "127.0.0.2" and event["names"] == ["pickup.example.test"]
        assert event["serial"] == renewed[0]["serial"]
        assert _time(event["time"]) >= _time(renewed[0]["time"]) + 6 - 1  # the grace (times are to the second)
        assert metric(port, "acmems_certificates_not_picked_up") == 1.0
        metrics = curl_post(f"http://127.0.0.1:{port}/metrics", b"", extra=["-X", "GET"])[1].decode()
        assert 'acmems_certificate_expiry_timestamp_seconds{name="pickup.example.test",storage="file"}' in metrics
        status, fetched = _sign(server, [], csr, source="127.0.0.2")  # A picks it up
        assert status == 200 and fetched == new
        wait_for(lambda: metric(port, "acmems_certificates_not_picked_up") == 0.0, waits.PROMPT, "the condition to end")
        # Two more passes of the watch, each of which would send the event again were it still in
        # force, and nothing left to deliver: then nothing more can arrive.
        passes = metric(port, "acmems_notify_watch_passes_total")
        wait_for(lambda: metric(port, "acmems_notify_watch_passes_total") >= passes + 2, waits.PROMPT, "two passes")
        wait_for(lambda: metric(port, "acmems_notify_queue_length") == 0.0, waits.PROMPT, "the queue empty")
        assert len(hook.events("not-picked-up")) == 1


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [tool("chromium-headless-shell"), "--no-sandbox", "--disable-gpu", "--window-size=1400,700", *args, url]
    return subprocess.run(command, capture_output=True, timeout=90, check=True)


def test_status_page_in_headless_chromium_and_admin_ip_enforced(
    acmems_factory: AcmemsFactory, pebble: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    config = _config(pebble, tmp_path, port, mgmt={"admin_ip": "127.0.0.1/32"})
    server = acmems_factory(config, port)
    names = ["status-a.example.test", "status-b.example.test"]
    for name in names:
        assert _sign(server, [name])[0] == 200
    url = f"http://127.0.0.1:{port}/status"
    dom = _chromium(url, "--dump-dom").stdout.decode()
    rows = re.findall(r'<tr data-state="([^"]+)" data-storage="file">(.*?)</tr>', dom, re.DOTALL)
    assert sorted(re.search(r'class="names">([^<]+)<', row).group(1) for _, row in rows) == names  # type: ignore[union-attr]
    assert {state for state, _ in rows} == {"ok"}
    assert all("<svg" in row and 'class="now"' in row and 'class="window"' in row for _, row in rows)
    assert all("127.0.0.1" in row for _, row in rows)  # last fetched by
    assert re.search(r'class="count" data-state="ok">2<', dom)
    shot = OUTPUT / "status-page.png"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    _chromium(url, f"--screenshot={shot}")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 5000
    for path in ("/status", "/metrics", "/health"):
        status, body, _ = curl_post(
            f"http://127.0.0.1:{port}{path}", b"", extra=["-X", "GET", "--interface", "127.0.0.2"]
        )
        assert status == 403, (path, body)
        assert b"admin-ip" in body
        status, _, _ = curl_post(f"http://127.0.0.1:{port}{path}", b"", extra=["-X", "GET"])
        assert status == 200, path


def test_a_webhook_redirect_is_not_followed_and_counts_as_a_failure(hook: Hook) -> None:
    from acmems.core.settings import WebhookReceiver
    from acmems.notify.outbox import Pending
    from acmems.notify.senders import DeliveryError, WebhookSender

    async def send() -> str:
        sender = WebhookSender(WebhookReceiver("ops", hook.url))
        try:
            await sender.send(Pending("1", "failed", b'{"id":"1"}'))
        except DeliveryError as exc:
            return str(exc)
        finally:
            await sender.close()
        return "delivered"

    hook.status = 302
    assert asyncio.run(send()) == "HTTP 302 Found to http://127.0.0.1:9/elsewhere"
    assert hook.attempts == 1 and not hook.posts  # not followed to the Location
    hook.status = 200
    assert asyncio.run(send()) == "delivered"


@pytest.mark.parametrize("security", ["tls", "none"])
def test_a_mail_taken_by_the_server_is_delivered_even_when_quit_is_answered_with_an_error(
    tmp_path: Path, security: str
) -> None:
    # The server answers 250 for the mail, then 421 to QUIT: the mail is delivered,
    # and reporting it as failed would send it again.
    from acmems.core.settings import EmailReceiver
    from acmems.notify.outbox import Pending
    from acmems.notify.senders import MailSender

    mail = MailServer(tmp_path / "smtp", security=security, bad_quit=True).start()
    try:
        settings = EmailReceiver(
            "ops",
            "127.0.0.1",
            mail.port,
            "acmems@example.test",
            ("ops@example.test",),
            security=security,
            ca_file=str(mail.ca_file),
        )
        body = json.dumps({"id": "1", "kind": "failed", "names": ["quit.example.test"]}).encode()
        asyncio.run(MailSender(settings).send(Pending("1", "failed", body)))
        ((_, recipients, text),) = mail.wait(1, timeout=waits.PROMPT)
        assert recipients == ["ops@example.test"] and b"quit.example.test" in text
    finally:
        mail.stop()


def test_a_command_receiver_gets_a_small_environment_without_acmems_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # acmems may run with database passwords and systemd's socket in its environment: a command
    # receiver (somebody's script) gets PATH, the locale and the event, nothing else.
    from acmems.core.settings import CommandReceiver
    from acmems.notify.outbox import Pending
    from acmems.notify.senders import CommandSender

    for key, value in {"PGPASSWORD": "db-s3cret", "NOTIFY_SOCKET": "/run/systemd/notify", "LC_ALL": "C.UTF-8"}.items():
        monkeypatch.setenv(key, value)
    dump = tmp_path / "env.json"
    script = tmp_path / "env.py"
    script.write_text(
        f"import json, os, sys\nsys.stdin.read()\nopen({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    receiver = CommandReceiver("script", (sys.executable, str(script)))
    asyncio.run(CommandSender(receiver).send(Pending("e-1", "issued", b"{}")))
    seen = json.loads(dump.read_text())
    assert "PGPASSWORD" not in seen and "NOTIFY_SOCKET" not in seen
    assert seen["ACMEMS_EVENT"] == "issued" and seen["ACMEMS_EVENT_ID"] == "e-1"
    assert seen["LC_ALL"] == "C.UTF-8" and seen["PATH"]
