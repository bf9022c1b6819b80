"""The command lines, in-process and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acmems import __version__
from acmems.cli import main
from acmems.cli.register import main as register_main

ROOT = Path(__file__).resolve().parents[2]


def test_check_prints_the_resolved_configuration_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "configs" / "example.ini")]) == 0
    out = capsys.readouterr().out
    assert "A1YP67armNf3cBrecyJHdb035" not in out and "hmac sha256 key ********" in out
    assert "default verification = http" in out and "default storage = file" in out
    assert "listeners = 192.0.2.13:1313, [2001:db8::13]:1313" in out
    assert "configuration is valid" in out


def test_check_of_a_broken_configuration_exits_1_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.ini"
    config.write_text("[mgmt]\nmax-size = huge\n")
    assert main(["check", str(config)]) == 1
    assert f"{config}:2: [mgmt] max-size: 'huge' is not a size" in capsys.readouterr().err


def test_check_masks_tsig_and_eab_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.ini"
    config.write_text(
        "[account]\neab-kid = k\neab-hmac-key = c2VjcmV0c2VjcmV0\n"
        '[verification "d"]\ntype = dns01-dnsUpdate\ntsig-key-name = n\ntsig-key-secret = dG9wc2VjcmV0\n'
    )
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "c2VjcmV0c2VjcmV0" not in out and "dG9wc2VjcmV0" not in out


@pytest.mark.parametrize("entry", [main, register_main])
def test_version_and_help(entry: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert callable(entry)
    with pytest.raises(SystemExit) as info:
        entry(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        entry(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("sub", ["serve", "check"])
def test_subcommand_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([sub, "--help"])
    assert f"acmems {sub}" in capsys.readouterr().out


def test_serve_without_account_key_exits_1_saying_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text(
        f"[account]\ndir = {tmp_path / 'account'}\n[mgmt]\nlistener = 127.0.0.1:9\n"
        '[verification "h"]\ntype = http01\nlistener = 127.0.0.1:9\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "acmems", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "acme-register --gen-key --register" in result.stderr


def test_real_subprocess_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "acmems", "check", str(ROOT / "configs" / "example.ini")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "configuration is valid" in result.stdout


def test_acme_register_account_names_a_configured_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "a.ini"
    config.write_text(
        f"[account]\ndir = {tmp_path / 'a'}\n"
        f'[account "backup"]\nacme-server = https://127.0.0.1:9/dir\ndir = {tmp_path / "b"}\n'
    )
    assert register_main(["--account", "spare", str(config)]) == 1
    assert 'no [account "spare"] (defined: default, backup)' in capsys.readouterr().out
    # the named account's own directory gets its key
    assert register_main(["--account", "backup", "--gen-key", str(config)]) == 1  # its CA is not there
    assert (tmp_path / "b" / "account.pem").exists() and not (tmp_path / "a" / "account.pem").exists()
