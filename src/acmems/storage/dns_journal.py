"""The TXT values acmems added and has not yet deleted (DNS-01), so that a crash leaves none behind.

A :class:`DnsRecord` names the final name and zone a value went to (after CNAMEs were followed), so
cleanup never resolves again. :class:`PendingJournal` keeps them in a small file (one instance);
:class:`acmems.cluster.dns_journal.DatabaseJournal` in the cluster database.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from acmems.fileio import write_atomic

__all__ = ["DnsJournal", "DnsRecord", "PendingJournal"]

log = logging.getLogger("acmems.challenges.dns_journal")


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One TXT value added at a server (the primary that took it), at ``name`` (the end of any
    CNAME chain) in ``zone``."""

    server: str
    port: int
    zone: str
    name: str
    value: str


class DnsJournal(Protocol):
    """Where the TXT values added and not yet deleted are listed, so that a crash leaves none behind."""

    async def add(self, record: DnsRecord) -> None:
        """Note a value before it is added."""
        ...

    async def remove(self, record: DnsRecord) -> None:
        """Forget a value once it is deleted."""
        ...

    async def records(self) -> list[DnsRecord]:
        """The values left by runs that are gone (a previous run of this process; in a cluster, any
        instance no longer alive) that are to be deleted now."""
        ...


class PendingJournal:
    """The TXT values we added and have not yet deleted, kept on disk across crashes (one instance)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._records: dict[DnsRecord, int] = {}
        if path is not None and path.exists():
            try:
                for entry in json.loads(path.read_text()):
                    self._records[DnsRecord(**entry)] = 1
            except (ValueError, TypeError, OSError) as exc:
                log.warning("DNS journal %s cannot be read (%s); starting a new one", path, exc)

    async def records(self) -> list[DnsRecord]:
        """Every value listed (read at the start, before any order of this run)."""
        return list(self._records)

    async def add(self, record: DnsRecord) -> None:
        """Listed on disk before the value is added (a small file, written at once)."""
        self._records[record] = self._records.get(record, 0) + 1
        self._save()

    async def remove(self, record: DnsRecord) -> None:
        """Taken off the list once deleted."""
        count = self._records.get(record, 0) - 1
        if count > 0:
            self._records[record] = count
        else:
            self._records.pop(record, None)
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = [
            {"server": r.server, "port": r.port, "zone": r.zone, "name": r.name, "value": r.value}
            for r in self._records
        ]
        try:
            write_atomic(self.path, json.dumps(data).encode(), mode=0o600)
        except OSError as exc:
            log.error("DNS journal %s cannot be written: %s", self.path, exc.strerror)
