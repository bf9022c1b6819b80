"""Database failover (issue 25): the instances reach PostgreSQL by a libpq URI with two hosts and
target_session_attrs=read-write; the primary is stopped and its streaming standby promoted (two
real PostgreSQL 15 servers, replication set up here). The instances go on without a restart and no
certificate is issued twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import waits
from tests.cluster_fixtures import Database, start_cluster, stop_cluster
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.pgservice import PASSWORD, Postgres, Standby
from tests.realservices import Acmems, Pebble, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def pair() -> Iterator[tuple[Postgres, Standby]]:
    primary = Postgres().start()
    standby = Standby(primary).start()
    try:
        yield primary, standby
    finally:
        standby.remove()
        primary.remove()


def _sign(server: Acmems, csr: bytes) -> tuple[int, bytes]:
    status, body, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", csr)
    return status, body


def _health(server: Acmems) -> int:
    return curl_post(f"http://127.0.0.1:{server.mgmt_port}/health", b"", extra=["-X", "GET"])[0]


def _issued_at_ca(pebble: Pebble) -> int:
    return pebble.log.read_text(errors="replace").count("Issued certificate serial")


def test_the_primary_is_switched_and_the_instances_go_on_without_a_restart(
    acmems_factory: AcmemsFactory, pebble: Pebble, pair: tuple[Postgres, Standby], tmp_path: Path
) -> None:
    primary, standby = pair
    assert standby.in_recovery()
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    uri = (
        f"postgresql://acmems@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/acmems"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    database = Database(primary, "acmems", secret, uri=uri)
    cluster = start_cluster(acmems_factory, pebble, tmp_path / "account", database, tmp_path, count=2)
    try:
        first, second = cluster.instances
        issued_before = _issued_at_ca(pebble)
        before, _ = make_csr(["before-failover.example.test"])
        status, chain = _sign(first, before)
        assert status == 200, chain
        wait_for(  # the standby has the certificate's row before the switch (streaming, asynchronous)
            lambda: standby.psql("SELECT count(*) FROM acmems_certificates") == "1", waits.PROMPT, "replication"
        )
        primary.stop()
        standby.promote()
        assert not standby.in_recovery()
        for server in cluster.instances:  # back by themselves: the heartbeat and the pool find the new primary
            wait_for(lambda server=server: _health(server) == 200, waits.DATABASE_BACK, "the instance back")
        after, _ = make_csr(["after-failover.example.test"])
        status, new_chain = _sign(second, after)
        assert status == 200, new_chain
        assert _sign(second, before) == (200, chain)  # the certificate of before, from the new primary
        assert _sign(first, after) == (200, new_chain)
        assert _issued_at_ca(pebble) == issued_before + 2  # nothing issued twice
        assert standby.psql("SELECT count(*) FROM acmems_certificates") == "2"
        for server in cluster.instances:
            assert "Traceback" not in server.log_text()
    finally:
        stop_cluster(cluster)
