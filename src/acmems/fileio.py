"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["temp_writer_gone", "write_atomic"]


def write_atomic(path: Path, data: bytes | Iterable[bytes], mode: int = 0o644, *, exclusive: bool = False) -> None:
    """Write ``data`` (or its pieces, one after another: a large file never whole in memory) to
    ``path`` through a temporary file in the same folder, fsync and rename.

    The file has ``mode`` from its creation on (keys: 0o600), so no other user can read it in between.
    With ``exclusive`` an existing ``path`` is never replaced: :class:`FileExistsError` (another
    process wrote it first).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's process id in the name: a start can tell a killed write from one in progress
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                for piece in data:
                    handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if path exists, where a rename would replace it
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def temp_writer_gone(temp: Path) -> bool:
    """Whether the process that wrote temporary file ``temp`` (named by :func:`write_atomic`) is gone
    from this machine: its write was interrupted and will never finish."""
    parts = temp.name.split(".")
    if len(parts) < 4 or not parts[-3].isdigit():
        return False  # not named by write_atomic (or by an older acmems): unknown
    try:
        os.kill(int(parts[-3]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process, or no such pid at all
        return False
    return False
