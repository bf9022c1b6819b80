"""Per-block quotas (issue 25): ``limit-pending`` and ``limit-new-orders`` of one auth block refuse
its clients' new orders (429 naming the key and its numbers), never another block's, never a cache
hit; a cluster counts them across its instances."""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path

import pytest

from tests import ini, waits
from tests.cluster_fixtures import Database, database, postgres, start_cluster, stop_cluster
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.gates import HttpGate
from tests.realservices import Acmems, Bind, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres"]  # fixtures


def _sign(server: Acmems, csr: bytes) -> tuple[int, str, dict[str, str]]:
    status, body, headers = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", csr)
    return status, body.decode(errors="replace"), headers


def _series(server: Acmems, name: str) -> dict[str, float]:
    text = curl_post(f"http://127.0.0.1:{server.mgmt_port}/metrics", b"", extra=["-X", "GET"])[1].decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}}) (\S+)$", text, re.M)}


def test_limit_pending_and_limit_new_orders_hold_one_block_only(
    acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path
) -> None:
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    behind = free_port()
    port = free_port()
    config = ini.ini(
        ini.account(ca, tmp_path / "account"),
        ini.mgmt(port),
        ini.http01("http", behind),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth(
            "team-a",
            ["*.team-a.example.test"],
            ip="127.0.0.1",
            **{"limit-new-orders": "2/1h", "limit-pending": "1"},
        ),
        ini.auth("team-b", ["*.team-b.example.test"], ip="127.0.0.1"),
    )
    try:
        with HttpGate(ca.http_port, behind) as gate:
            server = acmems_factory(config, port)
            first, _ = make_csr(["one.team-a.example.test"])
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                running = pool.submit(_sign, server, first)
                assert gate.wait_held(1, waits.ISSUANCE), "the CA checks team-a's first order"
                status, body, headers = _sign(server, make_csr(["two.team-a.example.test"])[0])
                assert status == 429 and "auth block 'team-a': limit-pending = 1 reached" in body
                assert headers["retry-after"] == "30"
                other = pool.submit(_sign, server, make_csr(["one.team-b.example.test"])[0])
                assert gate.wait_held(2, waits.ISSUANCE), "team-b's order goes on while team-a's are held"
                gate.release()
                assert running.result(waits.ISSUANCE)[0] == 200 and other.result(waits.ISSUANCE)[0] == 200
            assert _sign(server, make_csr(["three.team-a.example.test"])[0])[0] == 200  # the refused one not counted
            status, body, headers = _sign(server, make_csr(["four.team-a.example.test"])[0])
            assert status == 429 and "limit-new-orders = 2/1h reached (2 new orders in the window)" in body
            assert 3500 <= int(headers["retry-after"]) <= 3600
            assert _sign(server, first)[0] == 200  # a cache hit: never counted, never refused
            assert _sign(server, make_csr(["two.team-b.example.test"])[0])[0] == 200
        refusals = _series(server, "acmems_block_refusals_total")
        assert refusals['{block="team-a",limit="limit-pending"}'] == 1
        assert refusals['{block="team-a",limit="limit-new-orders"}'] == 1
        assert _series(server, "acmems_block_orders_total") == {'{block="team-a"}': 2, '{block="team-b"}': 2}
        assert _series(server, "acmems_block_requests_total")['{block="team-a"}'] == 5
        assert "Traceback" not in server.log_text()
    finally:
        ca.stop()


def test_a_cluster_counts_a_block_s_new_orders_across_its_instances(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> None:
    cluster = start_cluster(
        acmems_factory, pebble, account_dir, database, tmp_path, count=2, auth={"limit-new-orders": "2/1h"}
    )
    try:
        first, second = cluster.instances
        assert _sign(first, make_csr(["q1.example.test"])[0])[0] == 200
        assert _sign(second, make_csr(["q2.example.test"])[0])[0] == 200
        status, body, _ = _sign(first, make_csr(["q3.example.test"])[0])
        assert status == 429 and "limit-new-orders = 2/1h reached" in body
        status, body, _ = _sign(second, make_csr(["q4.example.test"])[0])
        assert status == 429 and "limit-new-orders = 2/1h reached" in body
    finally:
        stop_cluster(cluster)


@pytest.mark.slow
def test_renewals_are_neither_refused_nor_counted(acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path) -> None:
    # 30-second certificates renewed by the renewer: with limit-new-orders = 2/1h the renewal of the
    # first certificate goes through and leaves the second new order its place.
    ca = Pebble(tmp_path / "pebble", bind.port, free_port(), profiles={"default": 90 * 86400, "short": 30}).start()
    port = free_port()
    config = ini.ini(
        ini.account(ca, tmp_path / "account"),
        ini.mgmt(port, renewal_interval=1),
        ini.http01("http", ca.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("team-a", ["*.team-a.example.test"], ip="127.0.0.1", profile="short", **{"limit-new-orders": "2/1h"}),
    )
    try:
        server = acmems_factory(config, port)
        assert _sign(server, make_csr(["first.team-a.example.test"])[0])[0] == 200
        wait_for(
            lambda: "renewed first.team-a.example.test ahead of its clients" in server.log_text(),
            30 + waits.RENEWAL_RETRY,  # within the certificate's life; once more after a backoff
            "the background renewal",
        )
        assert _sign(server, make_csr(["second.team-a.example.test"])[0])[0] == 200
        status, body, _ = _sign(server, make_csr(["third.team-a.example.test"])[0])
        assert status == 429 and "limit-new-orders = 2/1h reached (2 new orders in the window)" in body
        assert _series(server, "acmems_block_orders_total") == {'{block="team-a"}': 2}
    finally:
        ca.stop()
