"""acme-register against the real Pebble (with and without External Account Binding)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realservices import Bind, Pebble, free_port

pytestmark = pytest.mark.integration
EAB_KEY = base64.urlsafe_b64encode(b"an-external-account-binding-key!").decode().rstrip("=")


def write_config(tmp_path: Path, pebble: Pebble, extra: str = "") -> Path:
    config = tmp_path / "acmems.ini"
    config.write_text(
        f"[account]\nacme-server = {pebble.directory_url}\ndir = {tmp_path / 'account'}\n"
        f"ca-bundle = {pebble.ca_bundle}\n{extra}"
    )
    return config


def register(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from acmems.cli.register import main; raise SystemExit(main())", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_key_register_and_keep_key(pebble: Pebble, tmp_path: Path) -> None:
    config = write_config(tmp_path, pebble)
    result = register("--gen-key", "--register", "--accept-terms-of-service", "--email", "ops@example.org", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Generate private key ... done" in result.stdout
    assert "Initialize ACME client ... done" in result.stdout
    assert "Register ... done" in result.stdout
    key = tmp_path / "account" / "account.pem"
    registration = tmp_path / "account" / "registration.json"
    assert mode(key) == 0o600 and mode(registration) == 0o600
    assert "/my-account/" in json.loads(registration.read_text())["uri"]
    before = key.read_bytes()
    again = register("--gen-key", str(config))
    assert again.returncode == 0 and "keeping it" in again.stdout
    assert key.read_bytes() == before
    assert "Refreshing current registration ... done" in again.stdout
    override = register("--gen-key", "--override-existing-key", "--key-type", "ec", str(config))
    assert override.returncode == 0, override.stdout
    assert key.read_bytes() != before and b"PRIVATE KEY" in key.read_bytes() and mode(key) == 0o600
    backups = sorted(p.name.split(".bak-")[0] for p in (tmp_path / "account").glob("*.bak-*"))
    assert backups == ["account.pem", "registration.json"]
    assert "No registration yet" in override.stdout
    fresh = register("--register", "--accept-terms-of-service", str(config))
    assert fresh.returncode == 0 and "Register ... done" in fresh.stdout


def test_terms_of_service_must_be_accepted(pebble: Pebble, tmp_path: Path) -> None:
    config = write_config(tmp_path, pebble)
    refused = register("--gen-key", "--register", str(config))
    assert refused.returncode == 1
    assert "You need to accept the terms of service at data:" in refused.stdout
    assert not (tmp_path / "account" / "registration.json").exists()
    wrong = register("--register", "--accept-terms-of-service=https://example.org/old-tos", str(config))
    assert wrong.returncode == 1 and "not https://example.org/old-tos" in wrong.stdout
    tos = refused.stdout.split("terms of service at ")[1].split()[0]
    accepted = register("--register", f"--accept-terms-of-service={tos}", str(config))
    assert accepted.returncode == 0 and "Register ... done" in accepted.stdout


def test_terms_accepted_in_the_config(pebble: Pebble, tmp_path: Path) -> None:
    config = write_config(tmp_path, pebble, "accept-terms-of-service = yes\n")
    result = register("--gen-key", "--register", str(config))
    assert result.returncode == 0 and "Register ... done" in result.stdout


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory: pytest.TempPathFactory, bind: Bind) -> Iterator[Pebble]:
    ca = Pebble(tmp_path_factory.mktemp("eab-pebble"), bind.port, free_port(), eab_keys={"kid-1": EAB_KEY}).start()
    yield ca
    ca.stop()


def test_eab_required_accepted_and_wrong_mac(eab_pebble: Pebble, tmp_path: Path) -> None:
    config = write_config(tmp_path, eab_pebble, "accept-terms-of-service = yes\n")
    missing = register("--gen-key", "--register", str(config))
    assert missing.returncode == 1 and "requires External Account Binding" in missing.stdout
    wrong_key = base64.urlsafe_b64encode(b"not-the-right-key-at-all-no-no!!").decode().rstrip("=")
    wrong = register("--register", "--eab-kid", "kid-1", "--eab-hmac-key", wrong_key, str(config))
    assert wrong.returncode == 1 and "Register ... failed" in wrong.stdout
    assert "the CA refused" in wrong.stdout
    assert wrong_key not in wrong.stdout + wrong.stderr
    ok = register("--register", "--eab-kid", "kid-1", "--eab-hmac-key", EAB_KEY, str(config))
    assert ok.returncode == 0 and "Register ... done" in ok.stdout, ok.stdout


def test_eab_in_the_config_for_automatic_registration_at_start(eab_pebble: Pebble, tmp_path: Path) -> None:
    from tests.realservices import Acmems

    port = free_port()
    config = (
        f"[account]\nacme-server = {eab_pebble.directory_url}\ndir = {tmp_path / 'account'}\n"
        f"ca-bundle = {eab_pebble.ca_bundle}\naccept-terms-of-service = yes\neab-kid = kid-1\n"
        f"eab-hmac-key = {EAB_KEY}\n[mgmt]\nlistener = 127.0.0.1:{port}\n"
        f'[verification "h"]\ntype = http01\nlistener = 127.0.0.1:{free_port()}\n'
    )
    server = Acmems(tmp_path / "acmems", config, port).start()
    try:
        assert "registered a new ACME account" in server.log_text()
        assert EAB_KEY not in server.log_text()
    finally:
        server.stop()


def test_an_account_key_other_users_may_read_is_refused_naming_the_fix(pebble: Pebble, tmp_path: Path) -> None:
    config = write_config(tmp_path, pebble)
    assert register("--gen-key", "--register", "--accept-terms-of-service", str(config)).returncode == 0
    key = tmp_path / "account" / "account.pem"
    key.chmod(0o644)
    refused = register("--register", "--accept-terms-of-service", str(config))
    assert refused.returncode == 1
    assert (
        f"may be read or changed by other users (mode 0644); run 'chmod 600 {key}'" in refused.stdout + refused.stderr
    )
    key.chmod(0o600)
    assert register("--register", "--accept-terms-of-service", str(config)).returncode == 0
