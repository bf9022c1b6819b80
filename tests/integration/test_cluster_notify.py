"""Notifications in a cluster: undelivered events in the database, each delivered by one instance
(another adopts those of an instance that died), and the watch on one instance at a time."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ini
from tests.cluster_fixtures import Database, database, postgres, start_cluster, stop_cluster
from tests.conftest import AcmemsFactory, curl_post, make_csr
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


def test_an_event_of_an_instance_that_died_is_delivered_by_another_once(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, hook: Hook, tmp_path: Path
) -> None:
    cluster = start_cluster(
        acmems_factory, pebble, account_dir, database, tmp_path, count=2, extra=[_hook_section(hook, "issued")]
    )
    try:
        a, b = cluster.instances
        assert _sign(a, make_csr(["first.example.test"])[0])[0] == 200
        (first,) = hook.wait("issued", timeout=30)
        hook.stop()
        assert _sign(a, make_csr(["orphan.example.test"])[0])[0] == 200
        wait_for(lambda: "next try in" in a.log_text(), 30, "a's failed try")
        assert database.query("SELECT count(*) FROM acmems_notify_outbox").strip() == "1"
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        hook.start()
        events = hook.wait("issued", 2, timeout=60)  # b, once a's claim lapsed
        assert events[0]["id"] == first["id"] and events[1]["names"] == ["orphan.example.test"]
        assert "took over 1 undelivered event" in b.log_text()
        wait_for(lambda: database.query("SELECT count(*) FROM acmems_notify_outbox").strip() == "0", 10, "the row gone")
        time.sleep(6)  # b looks for events to adopt every 5 s: nothing is sent twice
        assert len(hook.posts) == 2
    finally:
        stop_cluster(cluster)


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
        assert _sign(a, csr)[0] == 200
        ca.stop()
        deadline = time.monotonic() + 60
        while not hook.events("overdue") and time.monotonic() < deadline:
            for server in (a, b):
                assert _sign(server, csr)[0] == 200  # the old certificate while it is valid
            time.sleep(1)
        hook.wait("overdue", timeout=5)
        time.sleep(4)  # several more passes of the watch on both instances
        assert len(hook.events("overdue")) == 1
        rows = database.query("SELECT key FROM acmems_notify_marks")
        assert "overdue/shared/" in rows
    finally:
        stop_cluster(cluster)
        ca.stop()
