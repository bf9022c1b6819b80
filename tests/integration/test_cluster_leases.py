"""Leases, fences and the database store against a real PostgreSQL, in this process (no acmems
server): the guarantees the cluster's one-order-per-CSR rests on, without timing games (a lapse is
made by setting the lease's expiry in the past with SQL)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from acmems.cluster import ClusterDb, DatabaseStore, prepare
from acmems.cluster.leases import DatabaseClaim
from acmems.core.settings import ClusterSettings, DatabaseStorage
from acmems.storage import Origin, StaleFence, csr_digest
from tests import waits
from tests.cluster_fixtures import Database, database, postgres
from tests.pgservice import PASSWORD
from tests.unit.test_storage_and_renewal import certificate

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres"]  # fixtures
T = TypeVar("T")
NOW = datetime.datetime.now(datetime.UTC)
CSR = b"-----BEGIN CERTIFICATE REQUEST-----\nnot parsed by the store\n-----END CERTIFICATE REQUEST-----\n"


def _run(db: Database, work: Callable[[ClusterDb, ClusterDb], Awaitable[T]]) -> T:
    async def both() -> T:
        a = ClusterDb(ClusterSettings(db.dsn, PASSWORD, "a"))
        b = ClusterDb(ClusterSettings(db.dsn, PASSWORD, "b"))
        await a.open()
        await b.open()
        try:
            await prepare(a)
            await prepare(b)
            return await work(a, b)
        finally:
            await a.close()
            await b.close()

    return asyncio.run(both())


def _lapse(db: Database) -> None:
    db.query("UPDATE acmems_leases SET expires = now() - interval '1 second'")


def test_one_lease_per_key_among_many_takers(database: Database) -> None:
    async def work(a: ClusterDb, b: ClusterDb) -> list[bool]:
        store_a = DatabaseStore(DatabaseStorage("shared"), a)
        store_b = DatabaseStore(DatabaseStorage("shared"), b)
        takers = [store_a.claim("d1", "http") if i % 2 else store_b.claim("d1", "http") for i in range(20)]
        claims = await asyncio.gather(*takers)
        taken = [c is not None for c in claims]
        for claim in claims:
            if claim is not None:
                await claim.release()
        return taken

    assert sum(_run(database, work)) == 1


def test_a_lapsed_holder_is_fenced_off_and_its_successor_resumes_the_saved_order(database: Database) -> None:
    chain_a = certificate(NOW, NOW + 90 * datetime.timedelta(days=1))
    chain_b = certificate(NOW, NOW + 90 * datetime.timedelta(days=1))
    digest = csr_digest(CSR)

    async def work(a: ClusterDb, b: ClusterDb) -> tuple[bytes | None, str | None]:
        store_a = DatabaseStore(DatabaseStorage("shared"), a)
        store_b = DatabaseStore(DatabaseStorage("shared"), b)
        first = await store_a.claim(digest, "http")
        assert isinstance(first, DatabaseClaim)
        await first.save_order("https://ca.example/order/1")
        assert await store_b.claim(digest, "http") is None  # held
        first.abandon()  # a stops renewing (stopped, or dead)
        await asyncio.to_thread(_lapse, database)
        second = await store_b.claim(digest, "http")
        assert isinstance(second, DatabaseClaim) and first.fence is not None and second.fence is not None
        assert second.fence > first.fence
        saved = second.saved_order
        with pytest.raises(StaleFence):  # a wakes up and tries to store its result
            await store_a.put(CSR, chain_a, Origin(None, "http", True, first.fence))
        await first.release()  # does not delete b's lease
        assert await store_a.claim(digest, "http") is None
        await store_b.put(CSR, chain_b, Origin(None, "http", True, second.fence))
        await second.release()
        store_a.forget(CSR)
        return await store_a.get(CSR), saved

    stored, saved = _run(database, work)
    assert saved == "https://ca.example/order/1"
    assert stored == chain_b


async def _found_held(store: DatabaseStore) -> None:
    # A waiter that asked the database and found the lease held registers to be woken: that
    # registration is the event waited for (not a sleep).
    async with asyncio.timeout(waits.PROMPT):
        while not store._waiters:
            await asyncio.sleep(0.01)  # not sync: the poll of the registration waited for


def test_a_waiter_is_woken_when_the_lease_is_released_or_lapses(database: Database) -> None:
    async def work(a: ClusterDb, b: ClusterDb) -> list[str]:
        store_a = DatabaseStore(DatabaseStorage("shared"), a)
        store_b = DatabaseStore(DatabaseStorage("shared"), b)
        woken = []
        claim = await store_a.claim("d2", "http")
        assert claim is not None
        waiting = asyncio.create_task(store_b.wait_released("d2", "http"))
        await _found_held(store_b)
        assert not waiting.done()  # it looked, and the lease is held
        await claim.release()
        await asyncio.wait_for(waiting, waits.PROMPT)  # a guard: woken by the release
        woken.append("released")
        claim = await store_a.claim("d3", "http")
        assert claim is not None
        claim.abandon()
        waiting = asyncio.create_task(store_b.wait_released("d3", "http"))
        await _found_held(store_b)
        assert not waiting.done()
        await asyncio.to_thread(_lapse, database)
        await asyncio.wait_for(waiting, waits.PROMPT)  # no notification: found by looking
        woken.append("lapsed")
        return woken

    assert _run(database, work) == ["released", "lapsed"]


def test_the_cas_pause_noted_by_one_instance_holds_the_others_in_its_scope(database: Database) -> None:
    from acmems.cluster.backoff import SharedBackoff
    from acmems.core.pause_scope import PauseScope, Scope, scopes_of
    from acmems.errors import CaError

    ca = "https://ca.example/dir"
    team_a, team_b = scopes_of(["www.team-a.example.com"]), scopes_of(["www.team-b.example.org"])

    async def work(a: ClusterDb, b: ClusterDb) -> tuple[int | None, str]:
        await SharedBackoff(b).check(ca, team_a)  # no pause yet
        await SharedBackoff(a).hold(ca, PauseScope(Scope.DOMAIN, "example.com"), 120, "too many certificates")
        with pytest.raises(CaError) as held:
            await SharedBackoff(b).check(ca, team_a)
        await SharedBackoff(b).check(ca, team_b)  # another registered domain: not held
        await SharedBackoff(a).hold(ca, PauseScope(Scope.DOMAIN, "example.com"), 60, "shorter")  # the longer stays
        with pytest.raises(CaError, match="too many certificates"):
            await SharedBackoff(b).check(ca, team_a)
        await asyncio.to_thread(database.query, "UPDATE acmems_ca_pauses SET until = now() - interval '1 second'")
        await SharedBackoff(b).check(ca, team_a)  # over
        return held.value.retry_after, held.value.message

    retry_after, message = _run(database, work)
    assert retry_after is not None and 110 <= retry_after <= 120
    assert "the CA paused the registered domain example.com (too many certificates)" in message


def test_the_watch_s_marks_are_written_only_under_its_lease(database: Database) -> None:
    # Instance a ran the watch, then lost its lease (it lapsed while a was stalled; b took it over
    # and wrote its marks). a's late save writes its pickups but not its marks.
    from acmems.cluster.notify_store import DatabaseState
    from acmems.notify.pickups import Pickups
    from acmems.notify.watch import Mark

    async def work(a: ClusterDb, b: ClusterDb) -> str:
        state_a, state_b = DatabaseState(a), DatabaseState(b)
        assert await state_a.may_watch()
        await state_a.save({"overdue:a": Mark(1.0, 1.0)}, Pickups())
        await asyncio.to_thread(_lapse, database)
        assert await state_b.may_watch()
        await state_b.save({"overdue:b": Mark(2.0, 2.0)}, Pickups())
        await state_a.save({"overdue:a": Mark(1.0, 3.0)}, Pickups())  # late: not its watch any more
        return await asyncio.to_thread(database.query, "SELECT string_agg(key, ',') FROM acmems_notify_marks")

    assert _run(database, work).strip() == "overdue:b"
