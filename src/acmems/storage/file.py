"""``type = file``: the original's cache layout, written atomically, with an in-memory index.

A CSR's certificate lives at ``<directory>/<h[:2]>/<h[2:]>/cert.pem`` next to ``csr.pem``, where
``h`` is the hex SHA-384 of the CSR's exact bytes, so an existing acme-mgmtserver cache keeps working.
A certificate ordered with a profile is another certificate: its ``h`` also covers the profile name.
``meta.json`` beside them says which verification and profile made it (for renewals); the mtime of
``csr.pem`` is when a client last asked for it.

The index (read once at start) keeps each certificate's names, expiry and renewal time, so a request
never parses a certificate and a miss for an unknown CSR costs one ``stat``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from acmems.fileio import write_atomic
from acmems.renewal import renewal_time
from acmems.settings import FileStorage

__all__ = ["CachedCertificate", "FileCache", "csr_digest"]

log = logging.getLogger(__name__)
# How often a cache hit refreshes csr.pem's mtime ("last asked for"): a metadata write, not per hit.
_TOUCH_EVERY = 3600.0
# How often a chain kept in memory is checked against its file (revoked or renewed by another process).
_HOT_RECHECK = 1.0


@functools.lru_cache(maxsize=4096)  # a cache hit asks for it at every request
def csr_digest(csr_pem: bytes, profile: str | None = None) -> str:
    """The cache key: hex SHA-384 of the CSR bytes (the original's), covering the profile if any."""
    if profile is None:
        return hashlib.sha384(csr_pem).hexdigest()
    return hashlib.sha384(csr_pem + b"\n#acmems-profile=" + profile.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedCertificate:
    """What the index knows of one cached certificate."""

    digest: str
    names: tuple[str, ...]
    serial: int
    not_before: datetime
    not_after: datetime
    renew_at: datetime
    last_requested: float = 0.0
    profile: str | None = None
    verification: str | None = None
    next_ari_check: float = 0.0
    folder: Path = Path()


def _describe(digest: str, chain: bytes, renew_within: timedelta, folder: Path) -> CachedCertificate:
    leaf = x509.load_pem_x509_certificate(chain)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return CachedCertificate(
        digest,
        names,
        leaf.serial_number,
        not_before,
        not_after,
        renewal_time(not_before, not_after, renew_within),
        folder=folder,
    )


def _remove_stale_temp_files(folder: Path) -> None:
    # Left by a process killed in the middle of write_atomic; the real files are whole.
    try:
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", temp)
    except OSError as exc:
        log.warning("cannot clean %s: %s", folder, exc)


class FileCache:
    """Certificates on disk, one folder per CSR (and profile)."""

    def __init__(self, settings: FileStorage) -> None:
        self.name = settings.name
        self.directory = settings.directory
        self.renew_within = timedelta(days=settings.renew_within_days)
        self._index: dict[str, CachedCertificate] = {}
        # The chains of recent hits, so that a client re-posting daily costs no file reads.
        self._hot: OrderedDict[str, tuple[bytes, int, str, float]] = OrderedDict()  # chain, mtime, path, checked
        self._hot_size = 512
        # When set (worker processes), the digests whose last request time was updated are added here.
        self.requested: set[str] | None = None

    def _folder(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest[2:]

    def _entry_from_disk(self, digest: str, folder: Path, chain: bytes) -> CachedCertificate:
        entry = _describe(digest, chain, self.renew_within, folder)
        try:
            requested = (folder / "csr.pem").stat().st_mtime
        except OSError:
            requested = 0.0
        profile = verification = None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            profile, verification = meta.get("profile"), meta.get("verification")
        except (OSError, ValueError, AttributeError):
            pass  # written by the original, or before meta.json existed
        return dataclasses.replace(entry, last_requested=requested, profile=profile, verification=verification)

    def read_index(self) -> dict[str, CachedCertificate]:
        """Read every cached certificate's metadata from disk (slow: run it in a thread)."""
        index: dict[str, CachedCertificate] = {}
        if not self.directory.is_dir():
            return index
        for first in self.directory.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for folder in first.iterdir():
                digest = first.name + folder.name
                _remove_stale_temp_files(folder)
                try:
                    chain = (folder / "cert.pem").read_bytes()
                    if not (folder / "csr.pem").exists():
                        continue
                    index[digest] = self._entry_from_disk(digest, folder, chain)
                except (OSError, ValueError) as exc:
                    log.warning("storage %s: skipping %s: %s", self.name, folder, exc)
        return index

    def merge_index(self, loaded: dict[str, CachedCertificate]) -> int:
        """Take a :meth:`read_index` result; entries written meanwhile win. How many are indexed."""
        loaded.update(self._index)
        self._index = loaded
        return len(loaded)

    def load_index(self) -> int:
        """Read the index now (for commands; the server reads it in the background)."""
        return self.merge_index(self.read_index())

    def entries(self) -> list[CachedCertificate]:
        """The indexed certificates, soonest renewal first."""
        return sorted(self._index.values(), key=lambda e: e.renew_at)

    def __len__(self) -> int:
        return len(self._index)

    def soonest_expiry(self) -> datetime | None:
        """When the first cached certificate expires, if there is one."""
        return min((e.not_after for e in self._index.values()), default=None)

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Drop what is remembered of this CSR's certificate: the next request reads the disk."""
        digest = csr_digest(csr_pem, profile)
        self._index.pop(digest, None)
        self._hot.pop(digest, None)

    def note_requested(self, digest: str, when: float) -> None:
        """Record a request answered by another process (a worker) for proactive renewal's bookkeeping."""
        entry = self._index.get(digest)
        if entry is not None and when > entry.last_requested:
            self._index[digest] = dataclasses.replace(entry, last_requested=when)

    def update(self, entry: CachedCertificate) -> None:
        """Replace an index entry (new renewal time from ARI, next check)."""
        if entry.digest in self._index:
            self._index[entry.digest] = entry

    def get(
        self, csr_pem: bytes, profile: str | None = None, now: datetime | None = None, *, allow_due: bool = False
    ) -> bytes | None:
        """The stored chain for exactly these CSR bytes (and profile) while it is not due for renewal;
        with ``allow_due``, while it is still valid at all (the fallback when a renewal fails)."""
        digest = csr_digest(csr_pem, profile)
        now = now or datetime.now(UTC)
        entry = self._index.get(digest)
        if entry is not None and now >= (entry.not_after if allow_due else entry.renew_at):
            self._hot.pop(digest, None)
            return None
        if entry is not None:
            self._note_request(entry)
            hot = self._hot.get(digest)
            if hot is not None:
                checked = time.monotonic()
                if checked - hot[3] < _HOT_RECHECK:
                    self._hot.move_to_end(digest)
                    return hot[0]
                # One stat a second: a file revoked (removed) or replaced by another process is not
                # served from memory for longer.
                try:
                    changed = os.stat(hot[2]).st_mtime_ns != hot[1]
                except OSError:
                    changed = True
                if not changed:
                    self._hot[digest] = (hot[0], hot[1], hot[2], checked)
                    self._hot.move_to_end(digest)
                    return hot[0]
                # Renewed or revoked elsewhere: describe the file on disk afresh.
                self._hot.pop(digest, None)
                self._index.pop(digest, None)
                entry = None
        folder = self._folder(digest)
        try:
            chain = (folder / "cert.pem").read_bytes()
            stored_csr = (folder / "csr.pem").read_bytes()
        except FileNotFoundError:
            self._index.pop(digest, None)
            return None
        except OSError as exc:
            log.warning("storage %s: cannot read %s: %s", self.name, folder, exc.strerror)
            return None
        if stored_csr != csr_pem:  # a SHA-384 collision is not expected; be exact anyway
            return None
        if not chain.startswith(b"-----BEGIN CERTIFICATE-----"):
            log.warning("storage %s: %s/cert.pem is not a certificate; issuing anew", self.name, folder)
            self._index.pop(digest, None)
            return None
        if entry is None:
            # Written by another acmems sharing this directory, or before the index was read.
            try:
                entry = self._entry_from_disk(digest, folder, chain)
            except ValueError:
                log.warning("storage %s: %s/cert.pem is not a certificate; issuing anew", self.name, folder)
                return None
            self._index[digest] = entry
            self._note_request(entry)
            if now >= (entry.not_after if allow_due else entry.renew_at):
                return None
        self._remember(digest, folder, chain)
        return chain

    def _note_request(self, entry: CachedCertificate) -> None:
        now = time.time()
        if now - entry.last_requested < _TOUCH_EVERY:
            return
        self._index[entry.digest] = dataclasses.replace(entry, last_requested=now)
        if self.requested is not None:
            self.requested.add(entry.digest)
        try:
            os.utime(entry.folder / "csr.pem", (now, now))
        except OSError as exc:
            log.debug("storage %s: cannot touch %s: %s", self.name, entry.folder, exc)

    def _remember(self, digest: str, folder: Path, chain: bytes) -> None:
        path = str(folder / "cert.pem")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return
        self._hot[digest] = (chain, mtime, path, time.monotonic())
        self._hot.move_to_end(digest)
        if len(self._hot) > self._hot_size:
            self._hot.popitem(last=False)

    def put(
        self,
        csr_pem: bytes,
        chain_pem: bytes,
        profile: str | None = None,
        verification: str | None = None,
        requested: bool = True,
    ) -> None:
        """Store the chain; the certificate first, so a crash in between leaves no csr without cert.

        A cert.pem whose csr.pem is missing is never served (``get`` needs both).
        """
        digest = csr_digest(csr_pem, profile)
        folder = self._folder(digest)
        entry = _describe(digest, chain_pem, self.renew_within, folder)
        previous = self._index.get(digest)
        write_atomic(folder / "cert.pem", chain_pem)
        write_atomic(folder / "meta.json", json.dumps({"profile": profile, "verification": verification}).encode())
        write_atomic(folder / "csr.pem", csr_pem)
        last = time.time() if requested or previous is None else previous.last_requested
        if not requested and previous is not None:
            os.utime(folder / "csr.pem", (last, last))  # a background renewal is not a client's request
        self._index[digest] = dataclasses.replace(
            entry, last_requested=last, profile=profile, verification=verification
        )
        self._hot.pop(digest, None)

    def remove_serial(self, serial: int) -> int:
        """Forget the certificates with this serial (revoked); how many were removed."""
        removed = 0
        for entry in [e for e in self._index.values() if e.serial == serial]:
            for name in ("cert.pem", "csr.pem", "meta.json"):
                (entry.folder / name).unlink(missing_ok=True)
            self._index.pop(entry.digest, None)
            self._hot.pop(entry.digest, None)
            removed += 1
        return removed
