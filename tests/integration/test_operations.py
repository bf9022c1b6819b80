"""Running acmems: /health, /metrics, SIGHUP reload, systemd notify, JSON logs, acmems list."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import waits
from tests.conftest import AcmemsFactory, base_config, curl_post, make_csr
from tests.ini import HMAC_KEY
from tests.realservices import Acmems, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_and_metrics_on_the_management_listener_only(acmems: Acmems, pebble: Pebble) -> None:
    base = f"http://127.0.0.1:{acmems.mgmt_port}"
    assert get(base + "/health") == (200, "ok\n")
    csr, _ = make_csr(["metrics.example.test"])
    assert curl_post(base + "/sign", csr)[0] == 200
    assert curl_post(base + "/sign", csr)[0] == 200
    assert curl_post(base + "/sign", b"garbage")[0] == 415
    status, text = get(base + "/metrics")
    assert status == 200
    assert 'acmems_sign_requests_total{status="200"} 2.0' in text
    assert 'acmems_sign_requests_total{status="415"} 1.0' in text
    assert 'acmems_issuances_total{outcome="issued",verification_type="http-01"} 1.0' in text
    assert "acmems_cache_hits_total 1.0" in text and "acmems_cache_misses_total 1.0" in text
    assert "acmems_certificates_cached 1.0" in text
    assert 'acmems_issuance_duration_seconds_count{verification_type="http-01"} 1.0' in text
    soonest = next(line for line in text.splitlines() if line.startswith("acmems_certificate_soonest_expiry_seconds"))
    assert 80 * 86400 < float(soonest.split()[1]) < 91 * 86400
    challenge = f"http://127.0.0.1:{pebble.http_port}"
    assert get(challenge + "/metrics")[0] == 404 and get(challenge + "/health")[0] == 404


def test_sighup_reload_applies_a_valid_config_and_refuses_a_broken_one(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "s")
    server = acmems_factory(config, port)
    assert server.proc is not None
    csr, _ = make_csr(["www.plain.sub.example2.test"])
    assert curl_post(f"http://127.0.0.1:{port}/sign", csr)[0] == 403
    server.config.write_text(config + '\n[auth "new"]\nip = 127.0.0.1\ndomain = *.plain.sub.example2.test\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in server.log_text(), waits.PROMPT, "reload")
    status, body, _ = curl_post(f"http://127.0.0.1:{port}/sign", csr)
    assert status == 200, body
    assert curl_post(f"http://127.0.0.1:{port}/sign", csr)[0] == 200  # granted, and remembered
    # access taken away again: the same client and CSR are refused at once (nothing remembered)
    server.config.write_text(config)
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.log_text().count("configuration reloaded") == 2, waits.PROMPT, "second reload")
    assert curl_post(f"http://127.0.0.1:{port}/sign", csr)[0] == 403
    server.config.write_text(config + '\n[auth "new"]\nip = 127.0.0.1\ndomain = *.plain.sub.example2.test\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.log_text().count("configuration reloaded") == 3, waits.PROMPT, "third reload")
    server.config.write_text(config.replace("max-size = 4k", "max-size = huge"))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log_text(), waits.PROMPT, "refused reload")
    assert "max-size: 'huge' is not a size" in server.log_text()
    other, _ = make_csr(["again.plain.sub.example2.test"])
    assert curl_post(f"http://127.0.0.1:{port}/sign", other)[0] == 200  # the last good config serves on


def test_systemd_notify_ready_and_stopping(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(20)
        port = free_port()
        server = acmems_factory(
            base_config(pebble, account_dir, port, tmp_path / "s"), port, env={"NOTIFY_SOCKET": path}
        )
        assert sock.recv(1024).decode().startswith("READY=1")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert sock.recv(1024).decode() == "STOPPING=1"
        assert server.proc.wait(30) == 0


def test_json_logs_one_line_per_sign_without_secrets(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = base_config(pebble, account_dir, port, tmp_path / "s") + "\n[logging]\nformat = json\nlevel = debug\n"
    server = acmems_factory(config, port)
    csr, _ = make_csr(["json.sub.example2.test"])
    from tests.conftest import hmac_header

    assert curl_post(f"http://127.0.0.1:{port}/sign", csr, {"Authentication": hmac_header(csr)})[0] == 200
    assert curl_post(f"http://127.0.0.1:{port}/sign", csr, {"Authentication": "hmac name=sha256, hash=00"})[0] == 403
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    signs = [entry["message"] for entry in lines if entry["logger"] == "acmems.sign"]
    assert len(signs) == 2
    assert "block=hmac names=json.sub.example2.test outcome=issued status=200" in signs[0]
    assert "status=403" in signs[1] and "peer=127.0.0.1" in signs[1]
    assert HMAC_KEY not in server.log_text()
    account_key = (account_dir / "account.pem").read_text().splitlines()[1]
    assert account_key not in server.log_text()


def test_acmems_list_shows_cached_certificates(acmems: Acmems) -> None:
    csr, _ = make_csr(["listed.example.test"])
    assert curl_post(f"http://127.0.0.1:{acmems.mgmt_port}/sign", csr)[0] == 200
    result = subprocess.run(
        [sys.executable, "-m", "acmems", "list", str(acmems.config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "1 certificate(s)" in result.stdout
    line = next(line for line in result.stdout.splitlines() if "listed.example.test" in line)
    assert " ok " in line and time.strftime("%Y") <= line.split()[0][:4]
