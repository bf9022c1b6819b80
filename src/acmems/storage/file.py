"""``type = file``: the original's cache layout, written atomically.

A CSR's certificate lives at ``<directory>/<h[:2]>/<h[2:]>/cert.pem`` next to ``csr.pem``, where
``h`` is the hex SHA-384 of the CSR's exact bytes, so an existing acme-mgmtserver cache keeps working.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from acmems.config import FileStorage
from acmems.fileio import write_atomic
from acmems.renewal import renewal_due

__all__ = ["FileCache", "csr_digest"]

log = logging.getLogger(__name__)


def csr_digest(csr_pem: bytes) -> str:
    """The cache key: hex SHA-384 of the CSR bytes, as the original computed it."""
    return hashlib.sha384(csr_pem).hexdigest()


class FileCache:
    """Certificates on disk, one folder per CSR."""

    def __init__(self, settings: FileStorage) -> None:
        self.name = settings.name
        self.directory = settings.directory
        self.renew_within = timedelta(days=settings.renew_within_days)

    def _folder(self, csr_pem: bytes) -> Path:
        digest = csr_digest(csr_pem)
        return self.directory / digest[:2] / digest[2:]

    def get(self, csr_pem: bytes, now: datetime | None = None) -> bytes | None:
        """The stored chain for these CSR bytes while it is not due for renewal."""
        folder = self._folder(csr_pem)
        try:
            stored_csr = (folder / "csr.pem").read_bytes()
            chain = (folder / "cert.pem").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("storage %s: cannot read %s: %s", self.name, folder, exc.strerror)
            return None
        if stored_csr != csr_pem:  # a SHA-384 collision is not expected; be exact anyway
            return None
        try:
            leaf = x509.load_pem_x509_certificate(chain)
        except ValueError:
            log.warning("storage %s: %s/cert.pem is not a certificate; issuing anew", self.name, folder)
            return None
        if renewal_due(leaf, now or datetime.now(UTC), self.renew_within):
            return None
        return chain

    def put(self, csr_pem: bytes, chain_pem: bytes) -> None:
        """Store the chain; the certificate first, so a crash in between leaves no csr without cert.

        A cert.pem whose csr.pem is missing is never served (``get`` needs both).
        """
        folder = self._folder(csr_pem)
        write_atomic(folder / "cert.pem", chain_pem)
        write_atomic(folder / "csr.pem", csr_pem)
