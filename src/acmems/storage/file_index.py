"""The file cache's saved index (``<directory>/.acmems-index.json``): what was read of each folder's
certificate, with the modification times of the folder and its ``cert.pem`` then. At the next start
(and for ``acmems list``) a folder whose times are unchanged (no file added, removed or replaced in
it, ``cert.pem`` not written) is taken from here with a few ``stat`` calls, instead of reading and
parsing the certificate: a large cache is indexed in a fraction of
the time. Any doubt (a missing, damaged or foreign file, another time) means reading the folder
itself, so the index can only make things faster, never wrong. The original acme-mgmtserver
ignores the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from acmems.fileio import write_atomic
from acmems.storage.base import CachedCertificate

__all__ = ["INDEX_NAME", "HotChain", "Saved", "mtime_ns", "mtimes_key", "read_saved", "write_saved"]

log = logging.getLogger(__name__)
INDEX_NAME = ".acmems-index.json"
_VERSION = 4  # one JSON header line, then one JSON array per folder


def mtimes_key(folder_ns: int, cert_ns: int) -> int:
    """The modification times of a folder and its cert.pem as one number (both, exactly: one int
    in memory per certificate instead of a tuple of two)."""
    return folder_ns << 64 | cert_ns


@dataclass(frozen=True, slots=True)
class Saved:
    """What the index says of one folder."""

    digest: str
    mtimes: int  # of the folder and of cert.pem when it was described (see :func:`mtimes_key`)
    names: tuple[str, ...]
    serial: int
    not_before: datetime
    not_after: datetime
    profile: str | None
    verification: str | None
    ca: str | None


def read_saved(directory: Path) -> Iterator[Saved]:
    """The saved index of ``directory``, one folder at a time (the file is never whole in memory);
    nothing when there is none or it cannot be used, and no more from the first line that cannot."""
    path = directory / INDEX_NAME
    try:
        with path.open("rb") as handle:
            if json.loads(handle.readline() or b"{}").get("version") != _VERSION:
                return
            fromtimestamp, utc = datetime.fromtimestamp, UTC
            while lines := handle.readlines(1 << 20):  # about a megabyte at a time, parsed at once
                for row in json.loads(b"[" + b",".join(lines) + b"]"):
                    digest, folder, cert, serial, not_before, not_after, profile, verification, ca, *names = row
                    if not (type(digest) is str and type(folder) is type(cert) is int):
                        raise ValueError(f"a malformed entry: {str(row)[:60]}")
                    yield Saved(
                        digest,
                        mtimes_key(folder, cert),
                        tuple(names),
                        int(serial, 16),
                        fromtimestamp(not_before, utc),
                        fromtimestamp(not_after, utc),
                        profile if isinstance(profile, str) else None,
                        verification if isinstance(verification, str) else None,
                        ca if isinstance(ca, str) else None,
                    )
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.info("%s cannot be used further (%s); reading the other folders", path, exc)


def write_saved(directory: Path, entries: Iterable[tuple[CachedCertificate, int]]) -> None:
    """Save the index (atomically, written piece by piece) from ``(entry, mtimes_key)`` pairs."""
    try:
        write_atomic(directory / INDEX_NAME, _lines(entries), mode=0o644)
    except OSError as exc:
        log.info("cannot save the index %s/%s: %s", directory, INDEX_NAME, exc.strerror)


def _lines(entries: Iterable[tuple[CachedCertificate, int]]) -> Iterator[bytes]:
    yield b'{"version":%d}\n' % _VERSION
    batch = []
    for e, mtimes in entries:
        row = [
            e.digest,
            mtimes >> 64,
            mtimes & (1 << 64) - 1,
            f"{e.serial:x}",
            int(e.not_before.timestamp()),
            int(e.not_after.timestamp()),
            e.profile,
            e.verification,
            e.ca,
            *e.names,
        ]
        batch.append(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        if len(batch) >= 1000:
            yield b"".join(batch)
            batch.clear()
    yield b"".join(batch)


@dataclass(slots=True)
class HotChain:
    """A chain kept in memory, the mtime of its file when read, and when that was last checked."""

    chain: bytes
    mtime_ns: int
    checked: float


def mtime_ns(path: Path) -> int | None:
    """The file's mtime in nanoseconds, or None when it cannot be read."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
