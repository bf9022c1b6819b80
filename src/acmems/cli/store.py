"""The commands that work on the stores directly: ``acmems list``, the cache side of ``acmems
revoke``, ``acmems import`` and ``acmems db init``. With ``[cluster]`` they open the cluster
database for the command's length (no listening connection, no schema change but ``db init``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from acmems.backends import Backend, Role, make_backend
from acmems.backends.base import Schema
from acmems.core.settings import Settings
from acmems.errors import AcmemsError
from acmems.notify.state import STATE_FILE, read_state
from acmems.notify.status import certificate_state
from acmems.storage import CachedCertificate, CertificateCache, CertificateIndex, CertificateStore, Origin

__all__ = ["check_database", "db_init", "import_certificates", "list_certificates", "remove_serial"]


@contextlib.asynccontextmanager
async def _backend(settings: Settings, schema: Schema = Schema.NEEDED) -> AsyncIterator[Backend]:
    backend = make_backend(settings, Role.COMMAND)
    await backend.open(schema)
    try:
        yield backend
    finally:
        await backend.close()


async def _loaded(settings: Settings, backend: Backend, names: list[str] | None = None) -> list[CertificateStore]:
    stores = []
    for name, storage in settings.storages.items():
        if names is not None and name not in names:
            continue
        store = backend.store(storage)
        await store.load_index()
        stores.append(store)
    return [s for s in stores if s.keeps_certificates]


async def list_certificates(settings: Settings) -> int:
    """``acmems list``: every storage's certificates (a cluster's from its database)."""
    now = datetime.now(UTC)
    thresholds = settings.notify.thresholds
    # The last errors the server noted (its notify-state.json); "renewing" is known only to the server.
    tracks = {}
    if settings.account.dir is not None:
        tracks = read_state(settings.account.dir / STATE_FILE)[1].tracks
    async with _backend(settings) as backend:
        # certificates ACME clients of [acme-server] ordered name their account (one look for all)
        acme = backend.acme_store(settings.acme_server.dir) if settings.acme_server is not None else None
        accounts = await acme.accounts_by_serial() if acme is not None else {}
        for store in await _loaded(settings, backend):
            count = store.count()
            print(f'[storage "{store.name}"] {store.where}: {count} certificate(s)')
            lines = []
            if count:
                lines.append(f"  {'not after (UTC)':<20} {'renew from (UTC)':<20} {'state':<11} {'ca':<10} names")
            for entry in store.entries():
                track = tracks.get((store.name, entry.digest))
                state = certificate_state(entry, now, thresholds, False, track.error if track else None)
                account = accounts.get(f"{entry.serial:x}")
                lines.append(
                    f"  {_when(entry.not_after)}  {_when(entry.renew_at)}  {state.replace(' ', '-'):<11} "
                    f"{entry.ca or 'default':<10} {', '.join(entry.names)}"
                    + (f"  (ACME account {account})" if account is not None else "")
                )
            if lines:
                sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _when(moment: datetime) -> str:
    # "2027-03-01 19:21:44" (UTC): isoformat is several times faster than strftime for 100,000 lines.
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="seconds")[:19]


async def remove_serial(settings: Settings, serial: int) -> int:
    """Take a revoked certificate out of every storage (in a cluster: out of every instance)."""
    async with _backend(settings) as backend:
        removed = 0
        for store in await _loaded(settings, backend):
            removed += await store.remove_serial(serial)
        return removed


async def import_certificates(settings: Settings, source: str, target: str) -> int:
    """``acmems import``: copy every certificate of storage ``source`` into ``target``."""
    for name in (source, target):
        if name not in settings.storages:
            names = ", ".join(sorted(settings.storages)) or "none defined"
            raise AcmemsError(f'the configuration has no [storage "{name}"] (defined: {names})')
    if source == target:
        raise AcmemsError("--from and --to name the same storage")
    async with _backend(settings, Schema.CREATE) as backend:
        loaded = await _loaded(settings, backend, [source])
        if not loaded:
            raise AcmemsError(f'[storage "{source}"] keeps no certificates (type = none)')
        origin = loaded[0]
        into = backend.store(settings.storages[target])
        if not into.keeps_certificates:
            raise AcmemsError(f'[storage "{target}"] keeps no certificates (type = none)')
        entries = origin.entries()
        done = await asyncio.gather(*(_copy(origin, into, entries[i::_COPIERS]) for i in range(_COPIERS)))
        copied, skipped = sum(c for c, _ in done), sum(s for _, s in done)
        print(
            f'imported {copied} certificate(s) from [storage "{source}"] ({origin.where}) '
            f'into [storage "{target}"] ({into.where})' + (f"; {skipped} skipped" if skipped else "")
        )
        return 1 if skipped else 0


_COPIERS = 4  # batches copied at once by acmems import
_BATCH = 500  # certificates per transaction


async def _copy(origin: CertificateIndex, into: CertificateCache, entries: list[CachedCertificate]) -> tuple[int, int]:
    copied = skipped = 0
    for first in range(0, len(entries), _BATCH):
        batch: list[tuple[bytes, bytes, Origin]] = []
        for entry in entries[first : first + _BATCH]:
            try:
                csr, chain = await origin.read(entry)
            except OSError as exc:
                print(f"skipped {', '.join(entry.names) or entry.digest[:16]}: {exc}", file=sys.stderr)
                skipped += 1
                continue
            batch.append((csr, chain, Origin(entry.profile, entry.verification, requested=False, ca=entry.ca)))
        try:
            await into.put_many(batch)
            copied += len(batch)
            continue
        except ValueError:
            pass  # one of them is not a certificate: one at a time, to name it
        for csr, chain, how in batch:
            try:
                await into.put(csr, chain, how)
            except (OSError, ValueError) as exc:
                print(f"skipped a certificate: {exc}", file=sys.stderr)
                skipped += 1
                continue
            copied += 1
    return copied, skipped


async def db_init(settings: Settings) -> int:
    """``acmems db init``: create or upgrade the cluster schema (as a role that may create tables)."""
    async with _backend(settings, Schema.CREATE) as backend:
        status = await backend.status()
    if status is None:
        raise AcmemsError("the configuration has no [cluster] section: there is no database to set up")
    print(f"cluster database {status}")
    return 0


async def check_database(settings: Settings) -> str | None:
    """The ``acmems check`` line on the cluster database: whether it answers, its schema version."""
    async with _backend(settings, Schema.ANY) as backend:
        status = await backend.status()
    return None if status is None else f"  database {status}"
