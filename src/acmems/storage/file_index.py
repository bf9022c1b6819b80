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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from acmems.fileio import write_atomic
from acmems.storage.base import CachedCertificate

__all__ = ["INDEX_NAME", "Saved", "read_saved", "write_saved"]

log = logging.getLogger(__name__)
INDEX_NAME = ".acmems-index.json"
_VERSION = 2


@dataclass(frozen=True, slots=True)
class Saved:
    """What the index says of one folder."""

    mtimes: tuple[int, int]  # of the folder and of cert.pem when it was described
    names: tuple[str, ...]
    serial: int
    not_before: datetime
    not_after: datetime
    profile: str | None
    verification: str | None


def read_saved(directory: Path) -> dict[str, Saved]:
    """The saved index of ``directory``; empty when there is none or it cannot be used."""
    try:
        data = json.loads((directory / INDEX_NAME).read_bytes())
        if data.get("version") != _VERSION:
            return {}
        saved = {}
        fromtimestamp, utc = datetime.fromtimestamp, UTC
        for digest, (folder, cert, names, serial, not_before, not_after, profile, verification) in data[
            "entries"
        ].items():
            if not (type(folder) is type(cert) is int and type(names) is list):
                raise ValueError(f"a malformed entry for {digest[:16]}")
            saved[digest] = Saved(
                (folder, cert),
                tuple(names),
                int(serial, 16),
                fromtimestamp(not_before, utc),
                fromtimestamp(not_after, utc),
                profile if isinstance(profile, str) else None,
                verification if isinstance(verification, str) else None,
            )
        return saved
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.info("%s/%s cannot be used (%s); reading every folder", directory, INDEX_NAME, exc)
        return {}


def write_saved(directory: Path, entries: Iterable[tuple[CachedCertificate, tuple[int, int]]]) -> None:
    """Save the index (atomically) from ``(entry, mtimes in ns of its folder and cert.pem)`` pairs."""
    data = {
        "version": _VERSION,
        "entries": {
            e.digest: [
                *mtimes,
                list(e.names),
                f"{e.serial:x}",
                int(e.not_before.timestamp()),
                int(e.not_after.timestamp()),
                e.profile,
                e.verification,
            ]
            for e, mtimes in entries
        },
    }
    try:
        write_atomic(directory / INDEX_NAME, json.dumps(data, separators=(",", ":")).encode(), mode=0o644)
    except OSError as exc:
        log.info("cannot save the index %s/%s: %s", directory, INDEX_NAME, exc.strerror)
