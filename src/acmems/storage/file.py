"""``type = file``: the original's cache layout, written atomically, with an in-memory index.

A CSR's certificate lives at ``<directory>/<h[:2]>/<h[2:]>/cert.pem`` next to ``csr.pem``, where
``h`` is the hex SHA-384 of the CSR's exact bytes, so an existing acme-mgmtserver cache keeps working.
The index (read once at start) keeps each certificate's names, expiry and renewal time, so a request
never parses a certificate and a miss for an unknown CSR costs one ``stat``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from acmems.config import FileStorage
from acmems.fileio import write_atomic
from acmems.renewal import renewal_time

__all__ = ["CachedCertificate", "FileCache", "csr_digest"]

log = logging.getLogger(__name__)


def csr_digest(csr_pem: bytes) -> str:
    """The cache key: hex SHA-384 of the CSR bytes, as the original computed it."""
    return hashlib.sha384(csr_pem).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedCertificate:
    """What the index knows of one cached certificate."""

    digest: str
    names: tuple[str, ...]
    not_after: datetime
    renew_at: datetime


def _describe(digest: str, chain: bytes, renew_within: timedelta) -> CachedCertificate:
    leaf = x509.load_pem_x509_certificate(chain)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    not_after = leaf.not_valid_after_utc
    return CachedCertificate(digest, names, not_after, renewal_time(leaf.not_valid_before_utc, not_after, renew_within))


def _remove_stale_temp_files(folder: Path) -> None:
    # Left by a process killed in the middle of write_atomic; the real files are whole.
    try:
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", temp)
    except OSError as exc:
        log.warning("cannot clean %s: %s", folder, exc)


class FileCache:
    """Certificates on disk, one folder per CSR."""

    def __init__(self, settings: FileStorage) -> None:
        self.name = settings.name
        self.directory = settings.directory
        self.renew_within = timedelta(days=settings.renew_within_days)
        self._index: dict[str, CachedCertificate] = {}
        # The chains of recent hits, so that a client re-posting daily costs no file reads.
        self._hot: OrderedDict[str, bytes] = OrderedDict()
        self._hot_size = 512

    def _folder(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest[2:]

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
                    index[digest] = _describe(digest, chain, self.renew_within)
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

    def get(self, csr_pem: bytes, now: datetime | None = None) -> bytes | None:
        """The stored chain for exactly these CSR bytes while it is not due for renewal."""
        digest = csr_digest(csr_pem)
        now = now or datetime.now(UTC)
        entry = self._index.get(digest)
        if entry is not None and now >= entry.renew_at:
            self._hot.pop(digest, None)
            return None
        if entry is not None:
            hot = self._hot.get(digest)
            if hot is not None:
                self._hot.move_to_end(digest)
                return hot
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
                entry = _describe(digest, chain, self.renew_within)
            except ValueError:
                log.warning("storage %s: %s/cert.pem is not a certificate; issuing anew", self.name, folder)
                return None
            self._index[digest] = entry
            if now >= entry.renew_at:
                return None
        self._remember(digest, chain)
        return chain

    def _remember(self, digest: str, chain: bytes) -> None:
        self._hot[digest] = chain
        self._hot.move_to_end(digest)
        if len(self._hot) > self._hot_size:
            self._hot.popitem(last=False)

    def put(self, csr_pem: bytes, chain_pem: bytes) -> None:
        """Store the chain; the certificate first, so a crash in between leaves no csr without cert.

        A cert.pem whose csr.pem is missing is never served (``get`` needs both).
        """
        digest = csr_digest(csr_pem)
        folder = self._folder(digest)
        entry = _describe(digest, chain_pem, self.renew_within)
        write_atomic(folder / "cert.pem", chain_pem)
        write_atomic(folder / "csr.pem", csr_pem)
        self._index[digest] = entry
        self._hot.pop(digest, None)
