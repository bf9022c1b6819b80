"""``[mgmt] workers``: worker processes answer cache hits on the shared management listener and pass
everything else to the main process; restarted when they die, replaced on reload, stopped with it."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from tests import waits
from tests.conftest import AcmemsFactory, base_config, curl_post, hmac_header, make_csr
from tests.ini import HMAC_KEY
from tests.realservices import Acmems, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration


def _children(pid: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.add(int(entry))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
        return str(response.read().decode())


def _metric(port: int, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", _get(f"http://127.0.0.1:{port}/metrics"), re.M)
    return float(match.group(1)) if match else 0.0


def _workers_config(pebble: Pebble, account_dir: Path, port: int, storage: Path, count: int = 3) -> str:
    return base_config(pebble, account_dir, port, storage).replace("[mgmt]\n", f"[mgmt]\nworkers = {count}\n")


@pytest.fixture
def pool(acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path) -> Acmems:
    port = free_port()
    return acmems_factory(_workers_config(pebble, account_dir, port, tmp_path / "storage"), port)


def test_workers_answer_hits_and_pass_the_rest_to_the_main_process(pool: Acmems) -> None:
    assert pool.proc is not None
    assert len(_children(pool.proc.pid)) == 2  # workers = 3: the main process and two workers
    url = f"http://127.0.0.1:{pool.mgmt_port}/sign"
    csr, _ = make_csr(["w1.sub.example2.test"])
    headers = {"Authentication": hmac_header(csr)}
    status, issued, _ = curl_post(url, csr, headers)  # a miss: issued by the main process (HTTP-01)
    assert status == 200, issued
    # Every curl is a new connection; the kernel spreads them over the three processes.
    answers = [curl_post(url, csr, headers) for _ in range(30)]
    assert {a[0] for a in answers} == {200}
    assert {a[1] for a in answers} == {issued}
    log = pool.log_text()
    assert re.search(r"names=w1\.sub\.example2\.test outcome=cached status=200 .* worker=\d", log)
    # Refusals are answered by whichever process got the connection, with the same one line.
    refused = [curl_post(url, csr, {"Authentication": hmac_header(csr, key="wrong")}) for _ in range(10)]
    assert {r[0] for r in refused} == {403}
    assert len({r[1] for r in refused}) == 1
    # /health and /metrics from any process are the main process's; worker counters reach it.
    assert _get(f"http://127.0.0.1:{pool.mgmt_port}/health").strip() == "ok"
    wait_for(lambda: _metric(pool.mgmt_port, "acmems_cache_hits_total") >= 30, waits.PROMPT, "worker counters")
    wait_for(
        lambda: _metric(pool.mgmt_port, 'acmems_sign_requests_total{status="403"}') >= 10,
        waits.PROMPT,
        "worker refusals",
    )
    assert _metric(pool.mgmt_port, 'acmems_sign_requests_total{status="200"}') == 31
    assert _metric(pool.mgmt_port, "acmems_issuances_total") == 0  # no such series without labels
    assert _metric(pool.mgmt_port, 'acmems_issuances_total{outcome="issued",verification_type="http-01"}') == 1


def test_a_killed_worker_is_started_again(pool: Acmems) -> None:
    assert pool.proc is not None
    before = _children(pool.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "stopped unexpectedly" in pool.log_text(), waits.PROMPT, "restart log line")
    wait_for(lambda: len(_children(pool.proc.pid) - before) == 1, waits.START, "a new worker")
    wait_for(lambda: _get(f"http://127.0.0.1:{pool.mgmt_port}/health").strip() == "ok", waits.START, "healthy again")
    assert _metric(pool.mgmt_port, "acmems_worker_restarts_total") == 1
    url = f"http://127.0.0.1:{pool.mgmt_port}/sign"
    csr, _ = make_csr(["w2.sub.example2.test"])
    headers = {"Authentication": hmac_header(csr)}
    answers = [curl_post(url, csr, headers)[0] for _ in range(20)]
    assert answers == [200] * 20


def test_reload_replaces_the_workers_with_the_new_configuration(pool: Acmems) -> None:
    assert pool.proc is not None
    url = f"http://127.0.0.1:{pool.mgmt_port}/sign"
    csr, _ = make_csr(["w3.sub.example2.test"])
    headers = {"Authentication": hmac_header(csr)}
    assert curl_post(url, csr, headers)[0] == 200
    assert [curl_post(url, csr, headers)[0] for _ in range(10)] == [200] * 10  # cached in the workers too
    before = _children(pool.proc.pid)
    # The key changes: no process may answer with the old one once the reload is logged.
    pool.config.write_text(pool.config_text.replace(HMAC_KEY, "another-key-entirely"))
    pool.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in pool.log_text(), waits.START, "reload")
    assert not before & _children(pool.proc.pid)
    assert [curl_post(url, csr, headers)[0] for _ in range(20)] == [403] * 20
    new_headers = {"Authentication": hmac_header(csr, key="another-key-entirely")}
    assert [curl_post(url, csr, new_headers)[0] for _ in range(10)] == [200] * 10
    pool.config.write_text(pool.config_text.replace("workers = 3", "workers = 2"))
    pool.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused: [mgmt] workers changed" in pool.log_text(), waits.PROMPT, "refused reload")


def test_sigterm_stops_the_workers_too(pool: Acmems) -> None:
    assert pool.proc is not None
    workers = _children(pool.proc.pid)
    assert pool.stop() == 0
    wait_for(lambda: not any(_alive(pid) for pid in workers), waits.PROMPT, "workers gone")


def test_workers_stop_when_the_main_process_is_killed(pool: Acmems) -> None:
    assert pool.proc is not None
    workers = _children(pool.proc.pid)
    assert workers
    pool.stop(signal.SIGKILL)
    wait_for(lambda: not any(_alive(pid) for pid in workers), waits.PROMPT, "orphaned workers gone")


def test_fetches_answered_by_workers_reach_the_status_page_and_admin_ip_holds_there(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    config = _workers_config(pebble, account_dir, port, tmp_path / "storage").replace(
        "[mgmt]\n", "[mgmt]\nadmin-ip = 127.0.0.1\n"
    )
    server = acmems_factory(config, port)
    csr, _ = make_csr(["status.sub.example2.test"])
    headers = {"Authentication": hmac_header(csr, HMAC_KEY)}
    url = f"http://127.0.0.1:{port}/sign"
    assert curl_post(url, csr, headers)[0] == 200  # issued by the main process
    for _ in range(12):  # cache hits, most answered by workers, from another address
        assert curl_post(url, csr, headers, ["--interface", "127.0.0.2"])[0] == 200
    assert "worker=" in server.log_text()
    wait_for(
        lambda: "127.0.0.2" in _get(f"http://127.0.0.1:{port}/status"), waits.PROMPT, "the workers' fetches reported"
    )
    for _ in range(6):  # whichever process accepts it: the socket's peer decides
        status, body, _ = curl_post(
            f"http://127.0.0.1:{port}/status", b"", extra=["-X", "GET", "--interface", "127.0.0.2"]
        )
        assert status == 403 and b"admin-ip" in body
