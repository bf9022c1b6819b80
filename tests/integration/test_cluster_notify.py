"""Notifications in a cluster: undelivered events in the database, each delivered by one instance
(another adopts those of an instance that died), and the watch on one instance at a time."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests import ini, waits
from tests.cluster_fixtures import Database, database, postgres, start_cluster, stop_cluster
from tests.conftest import AcmemsFactory, curl_post, make_csr, metric
from tests.realservices import Acmems, Bind, Pebble, free_port, wait_for
from tests.receivers import Hook

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres"]  # fixtures


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook().start()
    yield receiver
    receiver.stop()


def _hook_section(hook: Hook, events: str) -> str:
    return ini.section('notify "ops"', {"type": "webhook", "url": hook.url, "events": events})


def _sign(server: Acmems, csr: bytes) -> tuple[int, bytes]:
    status, body, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", csr)
    return status, body


@pytest.mark.slow
def test_an_event_of_an_instance_that_died_is_delivered_by_another_once(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, hook: Hook, tmp_path: Path
) -> None:
    cluster = start_cluster(
        acmems_factory, pebble, account_dir, database, tmp_path, count=2, extra=[_hook_section(hook, "issued")]
    )
    try:
        a, b = cluster.instances
        assert _sign(a, make_csr(["first.example.test"])[0])[0] == 200
        (first,) = hook.wait("issued", timeout=waits.PROMPT)
        hook.stop()
        assert _sign(a, make_csr(["orphan.example.test"])[0])[0] == 200
        wait_for(lambda: "next try in" in a.log_text(), waits.PROMPT, "a's failed try")
        assert database.query("SELECT count(*) FROM acmems_notify_outbox").strip() == "1"
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        hook.start()
        events = hook.wait("issued", 2, timeout=waits.ADOPTION)  # b, once a's claim lapsed
        assert events[0]["id"] == first["id"] and events[1]["names"] == ["orphan.example.test"]
        assert "took over 1 undelivered event" in b.log_text()
        # Nothing is sent twice: no row is left to adopt, and b's next event comes right after.
        wait_for(
            lambda: database.query("SELECT count(*) FROM acmems_notify_outbox").strip() == "0",
            waits.PROMPT,
            "the row gone",
        )
        assert _sign(b, make_csr(["marker.example.test"])[0])[0] == 200
        events = hook.wait("issued", 3, timeout=waits.PROMPT)
        assert [e["names"] for e in events] == [
            ["first.example.test"],
            ["orphan.example.test"],
            ["marker.example.test"],
        ]
    finally:
        stop_cluster(cluster)


@pytest.mark.slow
def test_the_watch_runs_on_one_instance_overdue_is_sent_once(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, hook: Hook, tmp_path: Path
) -> None:
    ca = Pebble(tmp_path / "pebble", bind.port, free_port(), profiles={"default": 90 * 86400, "short": 30}).start()
    notify = ini.section("notify", {"check-interval": 1, "remind-every": "10m"})
    cluster = start_cluster(
        acmems_factory,
        ca,
        tmp_path / "account",
        database,
        tmp_path,
        count=2,
        extra=[notify, _hook_section(hook, "overdue")],
        auth={"profile": "short"},
        renewal_interval=1,
    )
    try:
        csr, _ = make_csr(["watched.example.test"])
        a, b = cluster.instances
        status, chain = _sign(a, csr)
        assert status == 200
        expires = x509.load_pem_x509_certificate(chain).not_valid_after_utc.timestamp()
        ca.stop()
        # Clients keep asking both instances (paced by the wait for the event) while the old
        # certificate is valid; after its expiry a request would be a renewal the CA cannot take.
        while not hook.events("overdue"):
            if time.time() < expires - 1:
                for server in (a, b):
                    assert _sign(server, csr)[0] == 200  # the old certificate while it is valid
            assert time.time() < expires + waits.PROMPT, f"no overdue event by the expiry; got {hook.events()}"
            hook.wait_any(1.0)

        # Two more passes of the watch (on whichever instance holds it; each would send the event
        # again were it not marked as sent) and nothing left to deliver: then nothing more comes.
        def passes() -> float:
            return sum(metric(s.mgmt_port, "acmems_notify_watch_passes_total") for s in (a, b))

        before = passes()
        wait_for(lambda: passes() >= before + 2, waits.PROMPT, "two more passes of the watch")
        wait_for(
            lambda: all(metric(s.mgmt_port, "acmems_notify_queue_length") == 0.0 for s in (a, b)),
            waits.PROMPT,
            "the queues empty",
        )
        assert len(hook.events("overdue")) == 1
        rows = database.query("SELECT key FROM acmems_notify_marks")
        assert "overdue/shared/" in rows
    finally:
        stop_cluster(cluster)
        ca.stop()
