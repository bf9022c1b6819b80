"""The file cache (layout, atomic writes, renewal) and when a certificate is due."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmems.core.renewal import renewal_time
from acmems.core.settings import FileStorage
from acmems.fileio import write_atomic
from acmems.storage import CachedCertificate, Origin
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
Store = FileCache | NoCache


def get(store: Store, csr: bytes, **kwargs: Any) -> bytes | None:
    return asyncio.run(store.get(csr, **kwargs))


def put(store: Store, csr: bytes, chain: bytes) -> None:
    asyncio.run(store.put(csr, chain))


def load(store: Store) -> int:
    return asyncio.run(store.load_index())


DAY = datetime.timedelta(days=1)


def certificate(not_before: datetime.datetime, not_after: datetime.datetime, serial: int = 1) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("lifetime_days", "renew_within_days", "renew_days_before_end"),
    [(90, 14, 14), (45, 14, 14), (30, 14, 10), (6, 14, 2), (1, 14, 1 / 3), (90, 60, 30)],
)
def test_renewal_time_is_renew_within_but_never_less_than_a_third_of_the_lifetime(
    lifetime_days: float, renew_within_days: float, renew_days_before_end: float
) -> None:
    start = NOW
    end = start + lifetime_days * DAY
    assert renewal_time(start, end, renew_within_days * DAY) == end - renew_days_before_end * DAY


def test_file_cache_uses_the_originals_layout_and_serves_until_due(tmp_path: Path) -> None:
    cache = FileCache(FileStorage("f", tmp_path, 14))
    csr = b"-----BEGIN CERTIFICATE REQUEST-----\nabc\n-----END CERTIFICATE REQUEST-----\n"
    chain = certificate(NOW - DAY, NOW + 89 * DAY)
    assert get(cache, csr, now=NOW) is None
    put(cache, csr, chain)
    digest = hashlib.sha384(csr).hexdigest()
    folder = tmp_path / digest[:2] / digest[2:]
    assert (folder / "csr.pem").read_bytes() == csr
    assert (folder / "cert.pem").read_bytes() == chain
    assert get(cache, csr, now=NOW) == chain
    assert get(cache, csr, now=NOW + 74 * DAY) == chain
    assert get(cache, csr, now=NOW + 76 * DAY) is None  # within 14 days of the end
    assert get(cache, csr + b"\n", now=NOW) is None  # other bytes, other CSR
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_short_lived_certificates_are_cached_for_two_thirds_of_their_life(tmp_path: Path) -> None:
    cache = FileCache(FileStorage("f", tmp_path, 14))
    chain = certificate(NOW, NOW + 6 * DAY)
    put(cache, b"csr", chain)
    assert get(cache, b"csr", now=NOW + 3.9 * DAY) == chain
    assert get(cache, b"csr", now=NOW + 4.1 * DAY) is None


def test_a_certificate_without_its_csr_or_a_broken_file_is_not_served(tmp_path: Path) -> None:
    cache = FileCache(FileStorage("f", tmp_path, 14))
    put(cache, b"csr", certificate(NOW, NOW + 90 * DAY))
    digest = hashlib.sha384(b"csr").hexdigest()
    (tmp_path / digest[:2] / digest[2:] / "cert.pem").write_bytes(b"garbage")
    assert get(cache, b"csr", now=NOW) is None
    (tmp_path / digest[:2] / digest[2:] / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage")
    fresh = FileCache(FileStorage("f", tmp_path, 14))
    assert load(fresh) == 0
    assert get(fresh, b"csr", now=NOW) is None
    (tmp_path / digest[:2] / digest[2:] / "csr.pem").unlink()
    assert get(cache, b"csr", now=NOW) is None


def test_no_cache_keeps_nothing() -> None:
    cache = NoCache("none")
    put(cache, b"csr", b"chain")
    assert get(cache, b"csr") is None


def test_write_atomic_sets_the_mode_from_the_start_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "key.pem"
    write_atomic(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["key.pem"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cert.pem"
    write_atomic(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["cert.pem"]


def test_the_index_is_read_at_start_and_follows_writes(tmp_path: Path) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    put(writer, b"one", certificate(NOW, NOW + 90 * DAY))
    put(writer, b"two", certificate(NOW, NOW + 30 * DAY))
    reader = FileCache(FileStorage("f", tmp_path, 14))
    assert load(reader) == 2 and reader.count() == 2
    assert reader.soonest_expiry() == NOW + 30 * DAY
    assert [e.not_after for e in reader.entries()] == [NOW + 30 * DAY, NOW + 90 * DAY]
    # a certificate another acmems wrote into the shared directory after start is found too
    put(writer, b"three", certificate(NOW, NOW + 90 * DAY))
    assert get(reader, b"three", now=NOW) is not None and reader.count() == 3


def test_news_about_a_replaced_certificate_does_not_change_its_successor(tmp_path: Path) -> None:
    # The renewer asked the CA's renewal-info about the old certificate while it was renewed.
    cache = FileCache(FileStorage("f", tmp_path, 14))
    put(cache, b"one", certificate(NOW, NOW + 90 * DAY, serial=1))
    [old] = cache.entries()
    put(cache, b"one", certificate(NOW, NOW + 90 * DAY, serial=2))
    cache.update(dataclasses.replace(old, renew_at=NOW))
    [now] = cache.entries()
    assert now.serial == 2 and now.renew_at > NOW


def test_a_file_replaced_by_another_process_is_described_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker process's view: the main process renews the certificate on disk.
    monkeypatch.setattr("acmems.storage.file._HOT_RECHECK", 0.0)  # check the file at every request
    main = FileCache(FileStorage("f", tmp_path, 14))
    worker = FileCache(FileStorage("f", tmp_path, 14), track_requests=True)
    old = certificate(NOW - 80 * DAY, NOW + 10 * DAY)
    put(main, b"csr", old)
    digest = hashlib.sha384(b"csr").hexdigest()
    folder = tmp_path / digest[:2] / digest[2:]
    two_days_ago = time.time() - 2 * 86400
    os.utime(folder / "csr.pem", (two_days_ago, two_days_ago))
    assert get(worker, b"csr", now=NOW - 70 * DAY) == old  # read from disk, remembered in memory
    assert worker.take_requested() == {digest}  # reported to the main process
    assert worker.take_requested() == set()  # once
    new = certificate(NOW, NOW + 90 * DAY)
    put(main, b"csr", new)
    cert = folder / "cert.pem"
    os.utime(cert, ns=(cert.stat().st_mtime_ns + 1_000_000, cert.stat().st_mtime_ns + 1_000_000))
    # the hot copy is noticed as stale, and the new file's dates replace the old ones in memory
    assert get(worker, b"csr", now=NOW - 69 * DAY) == new
    assert [e.not_after for e in worker.entries()] == [NOW + 90 * DAY]
    # forgotten on request (a worker does so when it passes a request on): the next one reads the disk
    worker.forget(b"csr")
    assert worker.count() == 0
    assert get(worker, b"csr", now=NOW) == new


def test_requests_answered_elsewhere_count_for_proactive_renewal(tmp_path: Path) -> None:
    cache = FileCache(FileStorage("f", tmp_path, 14))
    put(cache, b"csr", certificate(NOW, NOW + 90 * DAY))
    load(cache)
    digest = hashlib.sha384(b"csr").hexdigest()
    entry = next(e for e in cache.entries() if e.digest == digest)
    cache.note_requested(digest, entry.last_requested + 3600)
    assert next(e for e in cache.entries() if e.digest == digest).last_requested == entry.last_requested + 3600
    cache.note_requested(digest, 0.0)  # older news changes nothing
    assert next(e for e in cache.entries() if e.digest == digest).last_requested == entry.last_requested + 3600


def test_a_chain_in_memory_is_checked_against_its_file_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FileCache(FileStorage("f", tmp_path, 14))
    chain = certificate(NOW, NOW + 90 * DAY)
    put(cache, b"csr", chain)
    assert get(cache, b"csr", now=NOW) == chain  # now kept in memory
    clock = [time.monotonic()]
    monkeypatch.setattr("acmems.storage.file.time.monotonic", lambda: clock[0])
    assert get(cache, b"csr", now=NOW) == chain
    digest = hashlib.sha384(b"csr").hexdigest()
    for name in ("cert.pem", "csr.pem"):
        (tmp_path / digest[:2] / digest[2:] / name).unlink()  # `acmems revoke` in another process
    clock[0] += 0.5
    assert get(cache, b"csr", now=NOW) == chain  # within the second: from memory, no file access
    clock[0] += 0.6
    assert get(cache, b"csr", now=NOW) is None  # checked: gone


def test_the_count_while_the_index_is_read_never_falls_and_ends_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    for i in range(40):
        put(writer, f"csr{i}".encode(), certificate(NOW, NOW + 90 * DAY))
    # The reading thread stops after its 20th certificate until the count has been seen there:
    # the gauge is read in the middle of the reading, not only before and after it.
    halfway, go_on = threading.Event(), threading.Event()
    read = 0

    def pausing(method: Callable[..., CachedCertificate | None]) -> Callable[..., CachedCertificate | None]:
        def wrapper(*args: object) -> CachedCertificate | None:
            nonlocal read
            read += 1
            if read == 21:
                halfway.set()
                assert go_on.wait(10)
            return method(*args)

        return wrapper

    monkeypatch.setattr(FileCache, "_read_folder", pausing(FileCache._read_folder))
    monkeypatch.setattr(FileCache, "_from_saved", pausing(FileCache._from_saved))

    async def scenario() -> list[int]:
        reader = FileCache(FileStorage("f", tmp_path, 14))
        seen = []
        loading = asyncio.ensure_future(reader.load_index())
        while not loading.done():
            seen.append(reader.count())
            if halfway.is_set():
                seen.append(reader.count())
                go_on.set()
            await asyncio.sleep(0)  # not sync: yields to the loop between reads of the gauge
        seen.append(reader.count())
        assert await loading == 40
        return seen

    seen = asyncio.run(scenario())
    assert 20 in seen  # seen halfway
    assert seen[-1] == 40 and seen == sorted(seen)  # the gauge counts up as the thread reads, never falls


def test_the_index_removes_interrupted_writes_and_reads_the_profile(tmp_path: Path) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    asyncio.run(writer.put(b"csr", certificate(NOW, NOW + 90 * DAY), Origin("shortlived", "dns")))
    digest = hashlib.sha384(b"csr\n#acmems-profile=shortlived").hexdigest()
    folder = tmp_path / digest[:2] / digest[2:]
    (folder / ".cert.pem.x1y2.tmp").write_bytes(b"half a certificate")
    orphan = tmp_path / "ab" / ("c" * 94)
    orphan.mkdir(parents=True)
    (orphan / "cert.pem").write_bytes(certificate(NOW, NOW + 90 * DAY))  # no csr.pem: never served
    reader = FileCache(FileStorage("f", tmp_path, 14))
    assert load(reader) == 1
    (entry,) = reader.entries()
    assert (entry.profile, entry.verification, entry.digest) == ("shortlived", "dns", digest)
    assert sorted(p.name for p in folder.iterdir()) == ["cert.pem", "csr.pem", "meta.json"]


def test_the_saved_index_spares_reading_unchanged_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    put(writer, b"one", certificate(NOW, NOW + 90 * DAY, serial=11))
    put(writer, b"two", certificate(NOW, NOW + 30 * DAY, serial=12))
    assert load(FileCache(FileStorage("f", tmp_path, 14))) == 2  # reads the folders, saves the index
    assert (tmp_path / ".acmems-index.json").exists()

    def no_parsing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an unchanged folder was parsed")

    monkeypatch.setattr("acmems.storage.file.describe_chain", no_parsing)
    fast = FileCache(FileStorage("f", tmp_path, 14))
    assert load(fast) == 2
    assert sorted(e.serial for e in fast.entries()) == [11, 12]
    assert [e.not_after for e in fast.entries()] == [
        NOW.replace(microsecond=0) + 30 * DAY,
        NOW.replace(microsecond=0) + 90 * DAY,
    ]


def test_a_folder_changed_since_the_index_was_saved_is_read_again(tmp_path: Path) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    put(writer, b"one", certificate(NOW, NOW + 90 * DAY, serial=21))
    assert load(FileCache(FileStorage("f", tmp_path, 14))) == 1
    folder = next(p.parent for p in tmp_path.rglob("cert.pem"))
    write_atomic(folder / "cert.pem", certificate(NOW, NOW + 45 * DAY, serial=22))  # renewed by another process
    reader = FileCache(FileStorage("f", tmp_path, 14))
    assert load(reader) == 1
    assert [e.serial for e in reader.entries()] == [22]
    (folder / "cert.pem").unlink()  # revoked: gone, whatever the saved index says
    assert load(FileCache(FileStorage("f", tmp_path, 14))) == 0


def test_a_damaged_saved_index_means_reading_every_folder(tmp_path: Path) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    put(writer, b"one", certificate(NOW, NOW + 90 * DAY, serial=31))
    (tmp_path / ".acmems-index.json").write_text('{"version": 1, "entries": {"x": [1, 2]}}')
    reader = FileCache(FileStorage("f", tmp_path, 14))
    assert load(reader) == 1 and [e.serial for e in reader.entries()] == [31]


def test_a_saved_index_damaged_in_the_middle_is_used_up_to_there(tmp_path: Path) -> None:
    writer = FileCache(FileStorage("f", tmp_path, 14))
    put(writer, b"one", certificate(NOW, NOW + 90 * DAY, serial=41))
    put(writer, b"two", certificate(NOW, NOW + 60 * DAY, serial=42))
    assert load(FileCache(FileStorage("f", tmp_path, 14))) == 2
    index = tmp_path / ".acmems-index.json"
    header, first, _second = index.read_bytes().splitlines(keepends=True)
    index.write_bytes(header + first + b'["cut off in the midd\n')
    reader = FileCache(FileStorage("f", tmp_path, 14))
    assert load(reader) == 2 and sorted(e.serial for e in reader.entries()) == [41, 42]
