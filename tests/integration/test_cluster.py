"""Several acmems as one on a real PostgreSQL 15 (``[cluster]``, ``type = database``), against the
session Pebble, behind one nginx with plain round robin (no ``http_404`` retry)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmems.cluster.schema import SCHEMA_VERSION
from tests import ini, waits
from tests.cluster_fixtures import (
    Cluster,
    Database,
    cluster_config,
    database,
    postgres,
    start_cluster,
    stop_cluster,
    three,
)
from tests.conftest import AcmemsFactory, base_config, curl_post, make_csr, record
from tests.gates import HttpGate, SlowLink
from tests.pgservice import PASSWORD
from tests.realservices import Acmems, Apache, Bind, HAProxy, Nginx, Pebble, ServiceError, free_port, tool, wait_for

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres", "three"]  # fixtures


def _sign(server: Acmems, csr: bytes) -> tuple[int, bytes, dict[str, str]]:
    return curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", csr)


def _issued_at_ca(pebble: Pebble) -> int:
    return pebble.log.read_text(errors="replace").count("Issued certificate serial")


def test_the_same_csr_posted_to_three_instances_at_once_is_ordered_once(three: Cluster, pebble: Pebble) -> None:
    csr, _key = make_csr(["same.example.test"])
    before = _issued_at_ca(pebble)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda server: _sign(server, csr), three.instances))
    assert [status for status, _, _ in answers] == [200, 200, 200], answers
    assert answers[0][1] == answers[1][1] == answers[2][1]
    assert _issued_at_ca(pebble) - before == 1
    assert sum(s.log_text().count("issued a certificate for") for s in three.instances) == 1
    assert "names=same.example.test outcome=" in three.instances[1].log_text()
    assert "instance=acmems-b" in three.instances[1].log_text()  # each /sign line names its instance


def test_distinct_csrs_spread_over_the_instances_all_succeed(three: Cluster, pebble: Pebble) -> None:
    # The CA's three fetches of each token go round robin over the instances: most land on an
    # instance that did not start the order, and must find the token in the database.
    csrs = [make_csr([f"spread{i}.example.test"])[0] for i in range(9)]
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda i: _sign(three.instances[i % 3], csrs[i]), range(9)))
    assert [status for status, _, _ in answers] == [200] * 9, [a[1][:200] for a in answers]


def test_tokens_of_one_instance_are_answered_by_the_others(three: Cluster, pebble: Pebble, tmp_path: Path) -> None:
    # The CA's checks reach only b and c; every order runs on a: each token must come from the database.
    three.proxy.stop()
    backends = three.proxy.backends[1:]
    three.proxy = Nginx(tmp_path / "nginx-bc", pebble.http_port, backends, retry_404=False).start()
    csrs = [make_csr([f"others{i}.example.test"])[0] for i in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda c: _sign(three.instances[0], c), csrs))
    assert [status for status, _, _ in answers] == [200] * 3, [a[1][:200] for a in answers]
    served = (tmp_path / "nginx-bc" / "access.log").read_text()
    assert served.count(" 200 ") >= 3, served


def test_a_certificate_issued_through_one_instance_is_a_cache_hit_on_the_others(three: Cluster, pebble: Pebble) -> None:
    csr, _ = make_csr(["hit.example.test"])
    status, chain, _ = _sign(three.instances[0], csr)
    assert status == 200
    before = _issued_at_ca(pebble)
    for server in three.instances[1:]:
        status, again, _ = _sign(server, csr)
        assert status == 200 and again == chain
    assert _issued_at_ca(pebble) == before
    for server in three.instances[1:]:
        assert "outcome=cached" in server.log_text()


def _health(server: Acmems) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.mgmt_port}/health", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_database_outage_answers_what_is_held_and_recovers_without_a_restart(
    three: Cluster, database: Database
) -> None:
    server = three.instances[0]
    held, _ = make_csr(["held.example.test"])
    status, chain, _ = _sign(server, held)
    assert status == 200
    database.server.stop()
    try:
        status, again, _ = _sign(server, held)
        assert status == 200 and again == chain  # held in memory
        status, body, headers = _sign(server, make_csr(["during.example.test"])[0])
        assert status == 503, body
        assert b"database" in body and headers.get("retry-after")
        wait_for(lambda: _health(server)[0] == 503, waits.PROMPT, "/health reporting the database")
        assert "database" in _health(server)[1]
    finally:
        database.server.start()
    # Back, without a restart: once acmems finds the database again (its heartbeat, every second,
    # says so on /health), the next request is answered.
    wait_for(lambda: _health(server)[0] == 200, waits.DATABASE_BACK, "/health reporting the database back")
    status, body, _ = _sign(server, make_csr(["after.example.test"])[0])
    assert status == 200, body
    log = server.log_text()
    assert "Traceback" not in log
    assert log.count("does not answer") == 1  # one warning line for the loss


def _renewal_point(server: Acmems, name: str) -> float:
    text = curl_post(f"http://127.0.0.1:{server.mgmt_port}/metrics", b"", extra=["-X", "GET"])[1].decode()
    found = re.search(
        rf'^acmems_certificate_renewal_timestamp_seconds{{name="{re.escape(name)}",[^}}]*}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_a_held_certificate_survives_a_metadata_change_elsewhere_and_is_answered_in_an_outage(
    three: Cluster, database: Database
) -> None:
    # Instance b serves a certificate (now held); another instance moves its renewal point (as an
    # ARI window update does). Only another certificate or a revocation drops a held chain: in a
    # database outage b still answers it.
    first, second, _ = three.instances
    csr, _ = make_csr(["held-meta.example.test"])
    status, chain, _ = _sign(first, csr)
    assert status == 200
    status, again, _ = _sign(second, csr)
    assert status == 200 and again == chain
    before = _renewal_point(second, "held-meta.example.test")
    database.query(
        "UPDATE acmems_certificates SET renew_at = renew_at + interval '1 hour', updated = clock_timestamp() "
        "WHERE 'held-meta.example.test' = ANY(names)"
    )
    digest = database.query("SELECT digest FROM acmems_certificates WHERE 'held-meta.example.test' = ANY(names)")
    database.query(f"SELECT pg_notify('acmems_certificates', 'shared {digest.strip()} elsewhere')")
    wait_for(
        lambda: _renewal_point(second, "held-meta.example.test") == before + 3600,
        waits.PROMPT,
        "instance b taking in the new renewal point",
    )
    database.server.stop()
    try:
        status, held, _ = _sign(second, csr)
        assert status == 200 and held == chain
    finally:
        database.server.start()


def test_a_killed_listen_connection_strands_no_waiter(three: Cluster, database: Database, pebble: Pebble) -> None:
    database.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
    csr, _ = make_csr(["listen.example.test"])
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda server: _sign(server, csr), three.instances))
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][1] == answers[1][1] == answers[2][1]


def test_two_instances_starting_at_once_on_an_empty_database(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database
) -> None:
    ports = [(free_port(), free_port()) for _ in range(2)]
    configs = [cluster_config(pebble, account_dir, database, f"start-{i}", m, h) for i, (m, h) in enumerate(ports)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda i: acmems_factory(configs[i], ports[i][0], name=f"start-{i}"), range(2)))
    assert all(_health(s)[0] == 200 for s in started)
    assert database.query("SELECT count(*), max(version) FROM acmems_schema") == f"{SCHEMA_VERSION}|{SCHEMA_VERSION}"
    check = subprocess.run(
        [sys.executable, "-m", "acmems", "check", str(started[0].config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0
    assert f"answers; schema version {SCHEMA_VERSION}" in check.stdout
    assert PASSWORD not in check.stdout + check.stderr


def test_revocation_takes_a_certificate_out_of_every_instance(three: Cluster, tmp_path: Path) -> None:
    csr, _ = make_csr(["revoked.example.test"])
    status, chain, _ = _sign(three.instances[0], csr)
    assert status == 200
    for server in three.instances[1:]:
        assert _sign(server, csr)[1] == chain  # now held in their memory
    cert = tmp_path / "cert.pem"
    cert.write_bytes(chain)
    done = subprocess.run(
        [sys.executable, "-m", "acmems", "revoke", str(three.instances[2].config), "--cert", str(cert)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Removed it from 1 cache entry" in done.stdout
    for server in three.instances:
        wait_for(lambda s=server: _sign(s, csr)[1] != chain, waits.ISSUANCE, "a new certificate")
    renewed = {_sign(s, csr)[1] for s in three.instances}
    assert len(renewed) == 1 and chain not in renewed


def test_list_and_import_move_a_file_cache_into_the_database(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    # An installation with a file cache issues two certificates, then moves over to the cluster.
    port = free_port()
    single = acmems_factory(base_config(pebble, account_dir, port, tmp_path / "files"), port, name="single")
    csrs = [make_csr([f"moved{i}.example.test"])[0] for i in range(2)]
    chains = [curl_post(f"http://127.0.0.1:{port}/sign", c)[1] for c in csrs]
    single.stop()
    mgmt, http = free_port(), free_port()
    config = cluster_config(pebble, account_dir, database, "moved", mgmt, http) + ini.file_storage(
        "file", tmp_path / "files"
    )
    path = tmp_path / "cluster.ini"
    path.write_text(config)
    moved = subprocess.run(
        [sys.executable, "-m", "acmems", "import", str(path), "--from", "file", "--to", "shared"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "imported 2 certificate(s)" in moved.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "acmems", "list", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert listed.returncode == 0, listed.stderr
    shared = listed.stdout.split('[storage "shared"]')[1].split("[storage")[0]
    assert "2 certificate(s)" in shared and "moved0.example.test" in shared and "moved1.example.test" in shared
    server = acmems_factory(config, mgmt, name="moved")
    assert [_sign(server, c)[1] for c in csrs] == chains  # the same certificates, from the database
    assert "issued a certificate" not in server.log_text()


def _lease_row(database: Database) -> str:
    return database.query("SELECT holder || ' ' || coalesce(order_url, '-') FROM acmems_leases")


@contextlib.contextmanager
def _gated_pair(
    factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> Iterator[tuple[Pebble, HttpGate, Acmems, Acmems]]:
    """Two instances on a Pebble of their own whose HTTP-01 checks wait at a closed gate."""
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    behind = free_port()
    try:
        with HttpGate(ca.http_port, behind) as gate:
            cluster = start_cluster(factory, ca, tmp_path / "account", database, tmp_path, count=2, proxy_port=behind)
            try:
                holder, other = cluster.instances
                yield ca, gate, holder, other
            finally:
                stop_cluster(cluster)
    finally:
        ca.stop()


@pytest.mark.slow
def test_a_killed_holder_s_order_is_finished_by_another_instance(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    # The CA's HTTP-01 check is held at a gate: the holder is killed while its order waits for it.
    with _gated_pair(acmems_factory, bind, database, tmp_path) as (ca, gate, holder, other):
        csr, _ = make_csr(["killed.example.test"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(_sign, holder, csr)
            assert gate.wait_held(1, waits.ISSUANCE), "the CA checks the holder's challenge"
            assert " https://" in _lease_row(database)  # the order URL saved with the lease
            assert holder.proc is not None
            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(10)
            with pytest.raises(subprocess.CalledProcessError):
                first.result()  # the connection died with the holder
        assert database.query("SELECT count(*) FROM acmems_certificates") == "0"
        gate.release()  # the check goes on: nginx passes it to the live instance
        status, chain, _ = _sign(other, csr)
        assert status == 200, chain
        assert _issued_at_ca(ca) == 1  # the holder's order, finished: not a second one
        assert "resuming the saved order" in other.log_text() or "took over the lease" in other.log_text()
        assert "issued a certificate for killed.example.test" in other.log_text()


@pytest.mark.slow
def test_a_holder_stopped_past_its_lease_cannot_overwrite_its_successor(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    # The CA's HTTP-01 check is held at a gate: the holder is stopped while its order waits for it.
    with _gated_pair(acmems_factory, bind, database, tmp_path) as (ca, gate, holder, other):
        assert holder.proc is not None
        csr, _ = make_csr(["stopped.example.test"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(_sign, holder, csr)
            assert gate.wait_held(1, waits.ISSUANCE), "the CA checks the holder's challenge"
            assert " https://" in _lease_row(database)  # the order URL saved with the lease
            holder.proc.send_signal(signal.SIGSTOP)
            try:
                database.query("UPDATE acmems_leases SET expires = now() - interval '1 second'")  # lapsed
                gate.release()
                status, chain, _ = _sign(other, csr)
                assert status == 200, chain
            finally:
                holder.proc.send_signal(signal.SIGCONT)
            late_status, late_chain, _ = first.result()
        wait_for(
            lambda: (
                "another instance took its order over" in holder.log_text()
                or "issuance for stopped.example.test failed" in holder.log_text()
            ),
            waits.PROMPT,
            "the stopped holder's order to end",
        )
    stored = database.query("SELECT encode(chain, 'escape') FROM acmems_certificates")
    assert stored.encode().strip() == chain.strip()  # the successor's, not overwritten
    assert _issued_at_ca(ca) == 1  # both worked on the one saved order
    if late_status == 200:
        assert late_chain == chain


@pytest.mark.slow
def test_a_holder_that_loses_its_lease_stops_its_order_at_once_and_leaves_its_values(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    # The holder's order waits for the CA's check (held at a gate) when its lease is taken from it
    # (the fence moves on, as when another instance took a lapsed lease over). At its next renewal
    # it learns so: it makes no further CA call (no finalize), removes no value it published (the
    # successor relies on them), and says so; a later request resumes the one saved order.
    with _gated_pair(acmems_factory, bind, database, tmp_path) as (ca, gate, holder, other):
        csr, _ = make_csr(["fenced.example.test"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(_sign, holder, csr)
            assert gate.wait_held(1, waits.ISSUANCE), "the CA checks the holder's challenge"
            database.query("UPDATE acmems_leases SET fence = nextval('acmems_fences') WHERE key LIKE 'shared/%'")
            wait_for(
                lambda: "lost the lease of shared/" in holder.log_text(), waits.LEASE_LAPSE, "the holder to notice"
            )
            gate.release()
            status, body, _ = first.result(waits.ISSUANCE)
        assert status == 504 and b"lost the order's lease" in body
        assert "it drives it no further" in holder.log_text()
        assert _issued_at_ca(ca) == 0  # not finalized by the holder
        assert database.query("SELECT count(*) FROM acmems_http01").strip() == "1"  # its value left
        status, chain, _ = _sign(other, csr)  # once the taken lease lapses: the saved order resumed
        assert status == 200, chain
        assert _issued_at_ca(ca) == 1
        assert "Traceback" not in holder.log_text()


def test_worker_processes_answer_the_cluster_s_certificates(
    three: Cluster, acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database
) -> None:
    csr, _ = make_csr(["workers.example.test"])
    status, chain, _ = _sign(three.instances[0], csr)
    assert status == 200
    mgmt, http = free_port(), free_port()
    config = cluster_config(pebble, account_dir, database, "acmems-w", mgmt, http, workers=2)
    pooled = acmems_factory(config, mgmt, name="acmems-w")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _sign(pooled, csr), range(20)))
    assert {(status, body) for status, body, _ in answers} == {(200, chain)}
    fresh, _ = make_csr(["workers-new.example.test"])
    status, body, _ = _sign(pooled, fresh)  # a miss in a worker: the main process issues it
    assert status == 200, body
    assert "Traceback" not in pooled.log_text()


@pytest.mark.slow
def test_a_dns01_value_left_by_a_killed_instance_is_removed_by_another(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    ca = Pebble(tmp_path / "pebble", bind.port, free_port(), va_sleep=True).start()
    cluster = start_cluster(acmems_factory, ca, tmp_path / "account", database, tmp_path, count=2, bind=bind)
    try:
        holder, other = cluster.instances
        assert holder.proc is not None
        csr, _ = make_csr(["left.example.test"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(_sign, holder, csr)
            wait_for(
                lambda: bind.txt("_acme-challenge.left.example.test") != [], waits.ISSUANCE, "the TXT value published"
            )
            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(10)
            with pytest.raises(subprocess.CalledProcessError):
                first.result()
        assert database.query("SELECT count(*) FROM acmems_dns_pending") == "1"
        # The other instance adopts it once the killed one has not said it is alive for 10 s.
        wait_for(lambda: bind.txt("_acme-challenge.left.example.test") == [], waits.ADOPTION, "the value removed")
        wait_for(
            lambda: database.query("SELECT count(*) FROM acmems_dns_pending") == "0", waits.PROMPT, "the journal empty"
        )
        assert "removed 1 _acme-challenge record(s)" in other.log_text()
    finally:
        stop_cluster(cluster)
        ca.stop()


def _replaced_orders(ca: Pebble) -> list[str]:
    return re.findall(r'is a replacement of "([^"]+)"', ca.log.read_text(errors="replace"))


@pytest.mark.slow
def test_one_renewal_when_two_instances_see_the_same_certificate_due(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    # 15-second certificates: both renewers (every second) see each one due, by the lifetime rule
    # or by the CA's renewal window (each instance picks its own moment in it); the lease makes one
    # of them order: no certificate is ever replaced twice.
    ca = Pebble(tmp_path / "pebble", bind.port, free_port(), profiles={"default": 90 * 86400, "tiny": 15}).start()
    ports = [(free_port(), free_port()) for _ in range(2)]
    configs = [
        cluster_config(ca, tmp_path / "account", database, f"renew-{i}", m, h, renewal_interval=1).replace(
            '[auth "local"]', '[auth "local"]\nprofile = tiny'
        )
        for i, (m, h) in enumerate(ports)
    ]
    proxy = Nginx(tmp_path / "nginx", ca.http_port, [h for _, h in ports], retry_404=False).start()
    try:
        servers = [
            acmems_factory(c, m, name=f"renew-{i}") for i, (c, (m, _)) in enumerate(zip(configs, ports, strict=True))
        ]
        csr, _ = make_csr(["renewed.example.test"])
        status, first, _ = _sign(servers[0], csr)
        assert status == 200, first
        assert _sign(servers[1], csr)[1] == first  # both know it
        # Two lifetimes. Pebble indexes an issued certificate by its serial in a goroutine after it
        # can be fetched, and cannot find one whose serial's DER has a leading zero byte: a renewal
        # naming it in `replaces` then gets serverInternal and is ordered without `replaces`.
        wait_for(
            lambda: _issued_at_ca(ca) >= 3,  # the first certificate and two renewals
            waits.after(10.0, 2 * 15.0) + waits.RENEWAL_RETRY,
            "two renewals",
        )
        replaced = _replaced_orders(ca)
        assert len(replaced) == len(set(replaced)), replaced  # each certificate replaced once
        without = "".join(s.log_text() for s in servers).count("ordering it without replaces")
        assert len(replaced) + without >= 2
        logs = "".join(s.log_text() for s in servers)
        assert "already has a replacement" not in logs and "alreadyReplaced" not in logs  # no second order
    finally:
        proxy.stop()
        ca.stop()


def test_an_instance_with_another_account_key_is_refused(
    three: Cluster, pebble: Pebble, database: Database, tmp_path: Path
) -> None:
    mgmt, http = free_port(), free_port()
    config = cluster_config(pebble, tmp_path / "own-account", database, "acmems-x", mgmt, http)
    stranger = Acmems(tmp_path / "stranger", config, mgmt)
    with pytest.raises(ServiceError):
        stranger.start(timeout=waits.START)
    assert stranger.proc is not None and stranger.proc.wait(10) == 1
    assert "is not the cluster's" in stranger.log_text() and "copy the [account] dir" in stranger.log_text()
    assert "registered a new ACME account" not in stranger.log_text()  # refused before the CA hears of it


def test_a_second_live_instance_with_the_same_name_is_warned_about(
    three: Cluster, acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database
) -> None:
    mgmt, http = free_port(), free_port()
    twin = acmems_factory(cluster_config(pebble, account_dir, database, "acmems-a", mgmt, http), mgmt, name="twin")
    assert "another live acmems is named 'acmems-a'" in twin.log_text()


@pytest.mark.parametrize("server_type", [Apache, HAProxy])
def test_apache_and_haproxy_round_robin_without_a_404_retry(
    three: Cluster, pebble: Pebble, tmp_path: Path, server_type: type[Apache] | type[HAProxy]
) -> None:
    # docs/cluster.md's recipes: every order runs on a; the CA's checks go round robin to b and c only.
    three.proxy.stop()
    backends = three.proxy.backends[1:]
    proxy = server_type(tmp_path / "proxy", pebble.http_port, backends, retry_404=False).start()
    try:
        csrs = [make_csr([f"{server_type.__name__.lower()}{i}.example.test"])[0] for i in range(3)]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda c: _sign(three.instances[0], c), csrs))
        assert [status for status, _, _ in answers] == [200] * 3, [a[1][:200] for a in answers]
    finally:
        proxy.stop()


def test_db_init_as_owner_then_a_role_with_only_the_documented_grants(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    # docs/cluster.md, the second way: the owner creates the tables, acmems' role gets DML grants only.
    mgmt, http = free_port(), pebble.http_port  # this acmems answers the session Pebble's checks itself
    owner = tmp_path / "owner.ini"
    owner.write_text(cluster_config(pebble, account_dir, database, "owner", mgmt, http))
    done = subprocess.run(
        [sys.executable, "-m", "acmems", "db", "init", str(owner)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"answers; schema version {SCHEMA_VERSION}" in done.stdout
    role = f"limited_{database.name}"
    database.query(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    for grant in (
        f"GRANT CONNECT ON DATABASE {database.name} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ):
        database.query(grant)
    config = cluster_config(pebble, account_dir, database, "limited", mgmt, http).replace(
        "postgresql://acmems@", f"postgresql://{role}@"
    )
    server = acmems_factory(config, mgmt, name="limited")
    status, body, _ = _sign(server, make_csr(["limited.example.test"])[0])
    assert status == 200, body
    # Without the tables, such a role is refused at start with a line that says what to do.
    database.query("DROP TABLE acmems_schema")
    other = free_port()
    refused_config = cluster_config(pebble, account_dir, database, "refused", other, free_port()).replace(
        "postgresql://acmems@", f"postgresql://{role}@"
    )
    refused = Acmems(tmp_path / "refused", refused_config, other)
    with pytest.raises(ServiceError):
        refused.start(timeout=waits.START)
    assert "acmems db init" in refused.log_text()
    database.query(f"DROP OWNED BY {role}")
    database.query(f"DROP ROLE {role}")


def test_the_rate_limits_count_the_whole_cluster_s_orders(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    # limit-new-orders = 2/1h for the one account: an order through each instance uses both, and a
    # third new CSR through either is refused before the CA is asked (DatabaseRateLog).
    ports = [(free_port(), free_port()) for _ in range(2)]
    configs = [
        cluster_config(pebble, account_dir, database, f"limited-{i}", m, h).replace(
            "[account]\n", "[account]\nlimit-new-orders = 2/1h\n", 1
        )
        for i, (m, h) in enumerate(ports)
    ]
    proxy = Nginx(tmp_path / "nginx", pebble.http_port, [h for _, h in ports], retry_404=False).start()
    try:
        a, b = (
            acmems_factory(c, m, name=f"limited-{i}") for i, (c, (m, _)) in enumerate(zip(configs, ports, strict=True))
        )
        assert _sign(a, make_csr(["count-a.example.test"])[0])[0] == 200
        assert _sign(b, make_csr(["count-b.example.test"])[0])[0] == 200
        assert database.query("SELECT count(*) FROM acmems_rate_events WHERE kind = 'order'") == "2"
        issued = _issued_at_ca(pebble)
        for server in (a, b):
            status, body, headers = _sign(server, make_csr([f"third-{server.mgmt_port}.example.test"])[0])
            assert status == 429, body
            assert b"limit-new-orders = 2/1h" in body and 0 < int(headers["retry-after"]) <= 3600
        assert _issued_at_ca(pebble) == issued  # the CA was not asked
    finally:
        proxy.stop()


def _challenge_answers(server: Acmems, answer: str) -> float:
    text = curl_post(f"http://127.0.0.1:{server.mgmt_port}/metrics", b"", extra=["-X", "GET"])[1].decode()
    found = re.search(rf'^acmems_challenge_requests_total{{answer="{answer}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_junk_tokens_at_full_speed_cannot_starve_leases_heartbeat_or_sign(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    # The database is across a slow link (every chunk 50 ms late each way), so a lookup holds a
    # connection for a while. wrk asks instance a's public challenge listener for tokens nobody
    # holds, as fast as 128 connections can: half shaped like ACME tokens (each a database lookup),
    # half not (a 404 without one). Meanwhile the cluster issues through instance a, the CA's checks
    # landing on both listeners. Lookups have their own bound and the heartbeat its own connection:
    # no lease is lost, no /sign fails, and a's heartbeat never lapses.
    with SlowLink(free_port(), database.server.port, 0.05) as link:
        slow = dataclasses.replace(database, via_port=link.port)
        cluster = start_cluster(acmems_factory, pebble, account_dir, slow, tmp_path, count=2)
        try:
            first = cluster.instances[0]
            listener = re.search(r'\[verification "http"\]\ntype = http01\nlistener = (\S+)', cluster.configs[0])
            assert listener is not None
            script = tmp_path / "junk.lua"
            script.write_text(
                "counter = 0\n"
                "request = function()\n"
                "  counter = counter + 1\n"
                "  local token = (counter % 2 == 0) and string.format('%043d', counter) or ('x.' .. counter)\n"
                "  return wrk.format('GET', '/.well-known/acme-challenge/' .. token)\n"
                "end\n"
            )
            flood = subprocess.Popen(  # until the orders below are done, then stopped
                [tool("wrk"), "-t2", "-c128", "-d600s", "-s", str(script), f"http://{listener.group(1)}/"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                wait_for(lambda: _challenge_answers(first, "unknown") > 0, waits.PROMPT, "the flood reaching a")
                csrs = [make_csr([f"flood{i}.example.test"])[0] for i in range(4)]
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    results = list(pool.map(lambda csr: _sign(first, csr), csrs))
            finally:
                flood.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
                out, _ = flood.communicate(timeout=waits.PROMPT)
            assert [status for status, _, _ in results] == [200] * 4, [body[:300] for _, body, _ in results]
            requests = re.search(r"(\d+) requests in ([\d.]+)s", out)
            assert requests is not None and int(requests.group(1)) > 0, out
            record(
                "junk_tokens",
                requests=int(requests.group(1)),
                seconds=float(requests.group(2)),
                looked_up=_challenge_answers(first, "unknown"),
                not_looked_up=_challenge_answers(first, "not-a-token"),
            )
            assert _challenge_answers(first, "not-a-token") > 0  # the unshaped half: 404 without a lookup
            alive = database.query("SELECT alive_until > now() FROM acmems_instances WHERE name = 'acmems-a'")
            assert alive.strip() == "t"
            for server in cluster.instances:
                log = server.log_text()
                assert "lost the lease" not in log and "heartbeat late" not in log and "Traceback" not in log
        finally:
            stop_cluster(cluster)


def test_the_held_chains_are_bounded_by_held_chains(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database
) -> None:
    # held-chains = 1: the least recently served chain is dropped; in an outage only the held one
    # is answered.
    port = free_port()
    config = cluster_config(pebble, account_dir, database, "bounded", port, pebble.http_port).replace(
        '[storage "shared"]\ntype = database\n', '[storage "shared"]\ntype = database\nheld-chains = 1\n'
    )
    assert "held-chains = 1" in config
    server = acmems_factory(config, port, name="bounded")
    older, newer = make_csr(["older.example.test"])[0], make_csr(["newer.example.test"])[0]
    assert _sign(server, older)[0] == 200 and _sign(server, newer)[0] == 200
    database.server.stop()
    try:
        assert _sign(server, newer)[0] == 200
        assert _sign(server, older)[0] == 503
    finally:
        database.server.start()


def test_an_instance_stopped_cleanly_is_gone_at_once_and_restarts_without_a_name_warning(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    cluster = start_cluster(acmems_factory, pebble, account_dir, database, tmp_path, count=1)
    try:
        (instance,) = cluster.instances
        assert instance.stop() == 0
        assert database.query("SELECT count(*) FROM acmems_instances WHERE alive_until > now()") == "0"
        instance.start()
        assert "another live acmems is named" not in instance.log_text()
    finally:
        stop_cluster(cluster)
