"""``type = file``: the original's cache layout, written atomically, with an in-memory index.

A CSR's certificate lives at ``<directory>/<h[:2]>/<h[2:]>/cert.pem`` next to ``csr.pem``, where
``h`` is the hex SHA-384 of the CSR's exact bytes, so an existing acme-mgmtserver cache keeps working.
A certificate ordered with a profile is another certificate: its ``h`` also covers the profile name.
``meta.json`` beside them says which verification and profile made it (for renewals); the mtime of
``csr.pem`` is when a client last asked for it.

The index (read in the background at start) keeps each certificate's names, expiry and renewal
time; the chains of recent hits stay in memory, so a cache hit touches no file. Every file access
runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acmems.core.renewal import renewal_time
from acmems.core.settings import FileStorage
from acmems.fileio import write_atomic
from acmems.lru import Lru
from acmems.storage.base import CachedCertificate, Claim, LocalClaim, Origin, RequestedSince, csr_digest, describe_chain
from acmems.storage.file_index import INDEX_NAME, HotChain, Saved, mtime_ns, mtimes_key, read_saved, write_saved

__all__ = ["FileCache"]

log = logging.getLogger(__name__)
# How often a cache hit refreshes csr.pem's mtime ("last asked for"): a metadata write, not per hit.
_TOUCH_EVERY = 3600.0
# How often a chain kept in memory is checked against its file (revoked or renewed by another process).
_HOT_RECHECK = 1.0
_HOT_SIZE = 512
_SAVE_EVERY = 60.0  # seconds between writes of the saved index after changes
_CLIENT = Origin()


class FileCache:
    """Certificates on disk, one folder per CSR (and profile).

    Args:
        settings: the ``[storage]`` block.
        track_requests: remember which certificates were asked for, for :meth:`take_requested`
            (worker processes report them to the main process).
    """

    def __init__(self, settings: FileStorage, *, track_requests: bool = False) -> None:
        self.name = settings.name
        self.directory = settings.directory
        self.where = str(settings.directory)
        self.keeps_certificates = True
        self.renew_within = timedelta(days=settings.renew_within_days)
        self._index: dict[str, CachedCertificate] = {}
        self._hot: Lru[str, HotChain] = Lru(_HOT_SIZE)  # a client re-posting daily costs no file reads
        self._requested = RequestedSince(track_requests)
        self._being_read = 0  # certificates read so far by a running load_index (its thread counts)
        self._mtimes: dict[str, int] = {}  # mtimes_key of each folder and its cert.pem when described
        self._saved_at = 0.0  # monotonic time the saved index was last written
        self._stale_saved_index = False  # the last index read found the saved one out of date

    def _folder(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest[2:]

    # ------------------------------------------------------------------------------- the index

    def _describe_folder(self, digest: str, folder: str, chain: bytes, *, has_meta: bool) -> CachedCertificate:
        # Plain string paths and os calls: the index of a large cache reads many folders.
        try:
            requested = os.stat(folder + "/csr.pem").st_mtime
        except OSError:
            requested = 0.0
        profile = verification = ca = None
        if has_meta:
            try:
                with open(folder + "/meta.json", "rb") as handle:
                    meta = json.loads(handle.read())
                profile, verification, ca = meta.get("profile"), meta.get("verification"), meta.get("ca")
            except (OSError, ValueError, AttributeError):
                pass  # written by the original, or before meta.json existed
        return describe_chain(digest, chain, self.renew_within, requested, profile, verification, ca)

    def _read_index(self) -> dict[str, CachedCertificate]:
        index: dict[str, CachedCertificate] = {}
        if not self.directory.is_dir():
            return index
        for leftover in self.directory.glob(f".{INDEX_NAME}.*.tmp"):  # an index write interrupted
            leftover.unlink(missing_ok=True)
        with os.scandir(self.directory) as firsts:
            tops = [e.name for e in firsts if len(e.name) == 2 and e.is_dir()]
        present: set[str] = set()  # every folder: digests (the index's keys are these same strings)
        for top in tops:
            with os.scandir(self.directory / top) as folders:
                present.update(top + e.name for e in folders if e.is_dir())
        # First what the saved index knows and is unchanged, then every other folder in full.
        unread = set(present)
        saved_count = 0
        for known in read_saved(self.directory):
            saved_count += 1
            if known.digest not in unread:
                continue
            entry = self._from_saved(known, self._folder_path(known.digest))
            if entry is not None:
                unread.discard(entry.digest)
                index[entry.digest] = entry
                self._being_read += 1  # only this thread writes it; count() reads it
        for digest in unread:
            folder = self._folder_path(digest)
            try:
                entry = self._read_folder(digest, folder)
            except (OSError, ValueError) as exc:
                log.warning("storage %s: skipping %s: %s", self.name, folder, exc)
                continue
            if entry is not None:
                index[digest] = entry
                self._being_read += 1
        self._stale_saved_index = bool(unread) or saved_count != len(index)
        return index

    def _folder_path(self, digest: str) -> str:
        return f"{self.directory}/{digest[:2]}/{digest[2:]}"

    def _from_saved(self, known: Saved, folder: str) -> CachedCertificate | None:
        # Unchanged since the index was saved (a leftover temporary file would have changed the
        # folder's time)? Then only csr.pem's "last asked for" is read.
        try:
            mtimes = mtimes_key(os.stat(folder).st_mtime_ns, os.stat(folder + "/cert.pem").st_mtime_ns)
            if mtimes != known.mtimes:
                return None
            requested = os.stat(folder + "/csr.pem").st_mtime
        except OSError:
            return None
        self._mtimes[known.digest] = mtimes
        renew_at = renewal_time(known.not_before, known.not_after, self.renew_within)
        return CachedCertificate(
            known.digest, known.names, known.serial, known.not_before, known.not_after, renew_at, requested,
            known.profile, known.verification, ca=known.ca,
        )  # fmt: skip

    def _read_folder(self, digest: str, folder: str) -> CachedCertificate | None:
        files = set(os.listdir(folder))
        for temp in (n for n in files if n.startswith(".") and n.endswith(".tmp")):
            # Left by a process killed in the middle of write_atomic; the real files are whole.
            os.unlink(folder + "/" + temp)
            log.info("removed %s/%s, left by an interrupted write", folder, temp)
        if "cert.pem" not in files or "csr.pem" not in files:
            return None
        folder_ns = os.stat(folder).st_mtime_ns  # after the clean-up
        with open(folder + "/cert.pem", "rb") as handle:
            chain = handle.read()
            cert_ns = os.fstat(handle.fileno()).st_mtime_ns
        entry = self._describe_folder(digest, folder, chain, has_meta="meta.json" in files)
        self._mtimes[digest] = mtimes_key(folder_ns, cert_ns)
        return entry

    async def load_index(self) -> int:
        """Read every cached certificate's metadata (in a thread; folders unchanged since the saved
        index from it); entries written meanwhile win."""
        self._being_read = 0
        try:
            loaded = await asyncio.to_thread(self._read_index)
        finally:
            self._being_read = 0
        loaded.update(self._index)
        self._index = loaded
        if self._stale_saved_index:
            self._save_index()  # after the index is complete: the next start reads this one
        return len(loaded)

    def _changed(self) -> None:
        # Save the index at most once a minute after changes (in a thread, without waiting); a
        # change it misses only means that folder is read in full at the next start.
        if time.monotonic() - self._saved_at >= _SAVE_EVERY:
            self._save_index()

    def _save_index(self) -> None:
        self._saved_at = time.monotonic()
        pairs = [(e, self._mtimes[d]) for d, e in self._index.items() if d in self._mtimes]
        asyncio.get_running_loop().run_in_executor(None, write_saved, self.directory, pairs)

    def entries(self) -> list[CachedCertificate]:
        """The indexed certificates, soonest renewal first."""
        return sorted(self._index.values(), key=lambda e: e.renew_at)

    def count(self) -> int:
        """How many certificates are indexed; while the index is read, also those read so far (a
        certificate asked for meanwhile may count twice until the read is done)."""
        return len(self._index) + self._being_read

    def soonest_expiry(self) -> datetime | None:
        """When the first cached certificate expires, if there is one."""
        return min((e.not_after for e in self._index.values()), default=None)

    def update(self, entry: CachedCertificate) -> None:
        """Replace an index entry (new renewal time from ARI, next check) unless the certificate
        was replaced meanwhile (the news is about the old one)."""
        known = self._index.get(entry.digest)
        if known is not None and known.serial == entry.serial:
            self._index[entry.digest] = entry

    def forget(self, csr_pem: bytes, profile: str | None = None) -> None:
        """Drop what is remembered of this CSR's certificate: the next request reads the disk."""
        digest = csr_digest(csr_pem, profile)
        self._index.pop(digest, None)
        self._hot.pop(digest)

    # ---------------------------------------------------------------------------- requests

    def note_requested(self, digest: str, when: float) -> None:
        """Record a request answered by another process (a worker) for proactive renewal's bookkeeping."""
        entry = self._index.get(digest)
        if entry is not None and when > entry.last_requested:
            self._index[digest] = dataclasses.replace(entry, last_requested=when)

    def take_requested(self) -> set[str]:
        """The digests whose "last asked for" time changed since the last call (with ``track_requests``)."""
        return self._requested.take()

    def _note_request(self, entry: CachedCertificate) -> None:
        now = time.time()
        if now - entry.last_requested < _TOUCH_EVERY:
            return
        self._index[entry.digest] = dataclasses.replace(entry, last_requested=now)
        self._requested.add(entry.digest)
        # The mtime of csr.pem is "last asked for" on disk: set it in a thread, without waiting.
        asyncio.get_running_loop().run_in_executor(None, self._touch, self._folder(entry.digest) / "csr.pem", now)

    def _touch(self, path: Path, when: float) -> None:
        try:
            os.utime(path, (when, when))
        except OSError as exc:
            log.debug("storage %s: cannot touch %s: %s", self.name, path, exc)

    # ------------------------------------------------------------------------------ get / put

    async def get(
        self, csr_pem: bytes, profile: str | None = None, *, allow_due: bool = False, now: datetime | None = None
    ) -> bytes | None:
        """The stored chain for exactly these CSR bytes (and profile) while it is not due for renewal;
        with ``allow_due``, while it is still valid at all (the fallback when a renewal fails)."""
        digest = csr_digest(csr_pem, profile)
        now = now or datetime.now(UTC)
        entry = self._index.get(digest)
        if entry is not None:
            if now >= (entry.not_after if allow_due else entry.renew_at):
                self._hot.pop(digest)
                return None
            self._note_request(entry)
            hot = self._hot.get(digest)
            if hot is not None:
                checked = time.monotonic()
                if checked - hot.checked < _HOT_RECHECK:
                    return hot.chain  # the hot path: no file access, no thread
                if await self._still_current(digest, hot, checked):
                    return hot.chain
        return await self._read_chain(digest, csr_pem, now, allow_due)

    async def _still_current(self, digest: str, hot: HotChain, checked: float) -> bool:
        # One stat a second: a file revoked (removed) or replaced by another process is not served
        # from memory for longer.
        if await asyncio.to_thread(mtime_ns, self._folder(digest) / "cert.pem") == hot.mtime_ns:
            hot.checked = checked
            return True
        self._hot.pop(digest)
        self._index.pop(digest, None)  # renewed or revoked elsewhere: describe the file afresh
        return False

    def _read_files(self, folder: Path) -> tuple[bytes, bytes, int | None] | None:
        try:
            chain = (folder / "cert.pem").read_bytes()
            stored_csr = (folder / "csr.pem").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("storage %s: cannot read %s: %s", self.name, folder, exc.strerror)
            return None
        return chain, stored_csr, mtime_ns(folder / "cert.pem")

    async def _read_chain(self, digest: str, csr_pem: bytes, now: datetime, allow_due: bool) -> bytes | None:
        folder = self._folder(digest)
        found = await asyncio.to_thread(self._read_files, folder)
        if found is None:
            self._index.pop(digest, None)
            return None
        chain, stored_csr, mtime_ns = found
        if stored_csr != csr_pem:  # a SHA-384 collision is not expected; be exact anyway
            return None
        entry = self._index.get(digest)
        if not chain.startswith(b"-----BEGIN CERTIFICATE-----"):
            entry = None
        elif entry is None:
            # Written by another acmems sharing this directory, or before the index was read.
            try:
                entry = await asyncio.to_thread(self._describe_folder, digest, str(folder), chain, has_meta=True)
            except ValueError:
                entry = None
            if entry is not None:
                self._index[digest] = entry
                self._note_request(entry)
        if entry is None:
            log.warning("storage %s: %s/cert.pem is not a certificate; issuing anew", self.name, folder)
            self._index.pop(digest, None)
            return None
        if now >= (entry.not_after if allow_due else entry.renew_at):
            return None
        if mtime_ns is not None:
            self._hot.put(digest, HotChain(chain, mtime_ns, time.monotonic()))
        return chain

    def _write(self, digest: str, csr_pem: bytes, chain_pem: bytes, meta: bytes, last: float | None) -> int:
        folder = self._folder(digest)
        # The certificate first, so a crash in between leaves no csr.pem without its cert.pem
        # (``get`` needs both).
        write_atomic(folder / "cert.pem", chain_pem)
        write_atomic(folder / "meta.json", meta)
        write_atomic(folder / "csr.pem", csr_pem)
        if last is not None:
            os.utime(folder / "csr.pem", (last, last))  # a background renewal is not a client's request
        return mtimes_key(os.stat(folder).st_mtime_ns, os.stat(folder / "cert.pem").st_mtime_ns)

    async def put(self, csr_pem: bytes, chain_pem: bytes, origin: Origin = _CLIENT) -> None:
        """Store the chain (in a thread; atomically, file by file)."""
        profile, verification = origin.profile, origin.verification
        digest = csr_digest(csr_pem, profile)
        previous = self._index.get(digest)
        kept = None if origin.requested or previous is None else previous.last_requested
        # Described before anything is written: a chain that is not a certificate is refused whole.
        entry = describe_chain(digest, chain_pem, self.renew_within, kept or 0.0, profile, verification, origin.ca)
        meta = json.dumps({"profile": profile, "verification": verification, "ca": origin.ca}).encode()
        self._mtimes[digest] = await asyncio.to_thread(self._write, digest, csr_pem, chain_pem, meta, kept)
        self._index[digest] = entry if kept is not None else dataclasses.replace(entry, last_requested=time.time())
        self._hot.pop(digest)
        self._changed()

    async def read(self, entry: CachedCertificate) -> tuple[bytes, bytes]:
        """The stored ``csr.pem`` and ``cert.pem`` of ``entry``."""
        folder = self._folder(entry.digest)

        def read_both() -> tuple[bytes, bytes]:
            return (folder / "csr.pem").read_bytes(), (folder / "cert.pem").read_bytes()

        return await asyncio.to_thread(read_both)

    async def remove_serial(self, serial: int) -> int:
        """Forget the certificates with this serial (revoked), on disk too; how many were removed."""
        doomed = [e for e in self._index.values() if e.serial == serial]

        def remove() -> None:
            for entry in doomed:
                for name in ("cert.pem", "csr.pem", "meta.json"):
                    (self._folder(entry.digest) / name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)
        for entry in doomed:
            self._index.pop(entry.digest, None)
            self._mtimes.pop(entry.digest, None)
            self._hot.pop(entry.digest)
        if doomed:
            self._saved_at = 0.0  # now: a revoked certificate must not linger in the saved index
            self._changed()
        return len(doomed)

    def problems(self) -> list[str]:
        """A cache directory this process cannot write into."""
        probe = self.directory if self.directory.exists() else self.directory.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            return [f"storage {self.name}: {self.directory} is not writable"]
        return []

    async def claim(self, digest: str, verification: str) -> Claim | None:
        """Always granted: only this process orders for this store (the issuer's single flight)."""
        return LocalClaim()

    async def wait_released(self, digest: str, verification: str) -> None:
        """Never waited for: :meth:`claim` is always granted."""

    async def put_many(self, items: Sequence[tuple[bytes, bytes, Origin]]) -> None:
        """One :meth:`put` after the other (each atomic by itself)."""
        for csr_pem, chain_pem, origin in items:
            await self.put(csr_pem, chain_pem, origin)
