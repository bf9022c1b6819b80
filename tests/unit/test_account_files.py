"""The account key on disk: two processes starting at once on one account folder end with one key."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from acmems.ca.account_files import AccountFiles, generate_key


def test_a_key_is_saved_only_where_none_exists_and_replaced_only_when_asked(tmp_path: Path) -> None:
    files = AccountFiles(tmp_path / "account")
    files.save_key(generate_key("ec", 256))
    first = files.key_path.read_bytes()
    with pytest.raises(FileExistsError):  # another process saved one first: it stays
        files.save_key(generate_key("ec", 256))
    assert files.key_path.read_bytes() == first
    assert not list(files.directory.glob(".*.tmp"))
    files.save_key(generate_key("ec", 256), replace=True)  # acme-register --override-existing-key
    assert files.key_path.read_bytes() != first
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600


def test_only_old_temporary_files_are_taken_for_a_killed_write(tmp_path: Path) -> None:
    files = AccountFiles(tmp_path)
    young, old = tmp_path / ".account.pem.young.tmp", tmp_path / ".account.pem.old.tmp"
    young.write_bytes(b"another process is writing this")
    old.write_bytes(b"a killed write")
    os.utime(old, (time.time() - 120, time.time() - 120))
    files.remove_stale_temp_files()
    assert young.exists() and not old.exists()


def test_a_temporary_file_whose_writer_is_gone_is_taken_at_once(tmp_path: Path) -> None:
    files = AccountFiles(tmp_path)
    gone_pid = _a_pid_that_is_not_running()
    killed = tmp_path / f".dns01-pending.json.{gone_pid}.abc123.tmp"
    live = tmp_path / f".dns01-pending.json.{os.getpid()}.def456.tmp"
    killed.write_bytes(b"a killed write, a second ago")
    live.write_bytes(b"this process is writing it")
    files.remove_stale_temp_files()
    assert not killed.exists() and live.exists()


def _a_pid_that_is_not_running() -> int:
    pid = 4_000_000  # far above the pids in use here; checked below
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1
