"""contrib/acmems-client (POSIX sh, run with dash) against a real acmems and Pebble."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.ini import HMAC_KEY
from tests.integration.chain import leaf_names
from tests.realservices import ROOT, Acmems, Pebble

pytestmark = pytest.mark.integration
SCRIPT = ROOT / "contrib" / "acmems-client"
DASH = shutil.which("dash") or "/bin/sh"


def client(
    tmp_path: Path, acmems: Acmems, *args: str, env: dict[str, str] | None = None, key_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    if key_file is None:
        key_file = str(tmp_path / "hmac.key")
        Path(key_file).write_text(HMAC_KEY + "\n")
    command = [
        "dash",
        str(SCRIPT),
        "--server",
        f"http://127.0.0.1:{acmems.mgmt_port}/sign",
        "--hmac-key-file",
        key_file,
        "--key",
        str(tmp_path / "site.key"),
        "--csr",
        str(tmp_path / "site.csr"),
        "--cert",
        str(tmp_path / "site.pem"),
        "--reload",
        f"touch {tmp_path / 'reloaded'}",
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env or dict(os.environ)
    )


def test_first_run_installs_and_reloads_later_runs_change_nothing(
    acmems: Acmems, pebble: Pebble, tmp_path: Path
) -> None:
    names = ["shop.sub.example2.test", "www.shop.sub.example2.test"]
    roots = tmp_path / "roots.pem"
    roots.write_bytes(pebble.get("/roots/0"))
    first = client(tmp_path, acmems, "--ca-file", str(roots), *names)
    assert first.returncode == 0, first.stderr
    assert "installed a new certificate" in first.stdout
    assert (tmp_path / "reloaded").exists()
    assert stat.S_IMODE((tmp_path / "site.key").stat().st_mode) == 0o600
    chain = (tmp_path / "site.pem").read_bytes()
    assert leaf_names(chain) == set(names)
    csr = (tmp_path / "site.csr").read_bytes()
    key = (tmp_path / "site.key").read_bytes()
    (tmp_path / "reloaded").unlink()
    second = client(tmp_path, acmems, "--ca-file", str(roots), *names)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "" and not (tmp_path / "reloaded").exists()
    assert (tmp_path / "site.pem").read_bytes() == chain
    assert (tmp_path / "site.csr").read_bytes() == csr and (tmp_path / "site.key").read_bytes() == key
    # other names: a new CSR (same key) and a new certificate
    third = client(tmp_path, acmems, names[0])
    assert third.returncode == 0, third.stderr
    assert (tmp_path / "reloaded").exists()
    assert leaf_names((tmp_path / "site.pem").read_bytes()) == {names[0]}
    assert (tmp_path / "site.key").read_bytes() == key


def test_errors_exit_1_with_the_servers_reason(acmems: Acmems, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key\n")
    result = client(tmp_path, acmems, "x.sub.example2.test", key_file=str(wrong))
    assert result.returncode == 1
    assert "acmems answered 403: not authorized: the HMAC does not match" in result.stderr
    assert not (tmp_path / "site.pem").exists()
    outside = client(tmp_path, acmems, "www.not-ours.test")
    assert outside.returncode == 1 and "acmems answered 403" in outside.stderr
    on_command_line = subprocess.run(
        ["dash", str(SCRIPT), "--hmac-key", "x"], capture_output=True, text=True, check=False
    )
    assert on_command_line.returncode == 1 and "never taken on the command line" in on_command_line.stderr


def test_env_file_rsa_key_and_wget_instead_of_curl(acmems: Acmems, tmp_path: Path) -> None:
    # A PATH without curl: the script falls back to wget.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (
        "openssl",
        "wget",
        "awk",
        "sed",
        "grep",
        "tr",
        "sort",
        "head",
        "tail",
        "cat",
        "mktemp",
        "rm",
        "mv",
        "cp",
        "chmod",
        "cmp",
        "dirname",
        "basename",
        "sh",
        "touch",
    ):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (tmp_path / "hmac.key").write_text(HMAC_KEY)
    env_file = tmp_path / "client.env"
    env_file.write_text(
        f"ACMEMS_URL=http://127.0.0.1:{acmems.mgmt_port}/sign\nACMEMS_HMAC_KEY_FILE={tmp_path / 'hmac.key'}\n"
        f"ACMEMS_NAMES='mx.sub.example2.test'\nACMEMS_KEY_TYPE=rsa\nACMEMS_KEY={tmp_path / 'k.pem'}\n"
        f"ACMEMS_CSR={tmp_path / 'c.pem'}\nACMEMS_CERT={tmp_path / 'cert.pem'}\n"
    )
    result = subprocess.run(
        [DASH, str(SCRIPT), "--config", str(env_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert leaf_names((tmp_path / "cert.pem").read_bytes()) == {"mx.sub.example2.test"}
    text = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-noout", "-text"], capture_output=True, check=True
    ).stdout
    assert b"Private-Key: (3072 bit" in text and b"modulus" in text
