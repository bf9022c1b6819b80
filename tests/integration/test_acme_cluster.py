"""[acme-server] in a cluster: accounts, orders and nonces in the database, so an ACME client whose
every request lands on another instance (nginx, plain round robin per request) gets its certificate, and an order
whose instance dies while it is processing is finished by another."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests import ini, waits
from tests.acme_clients import AcmeSite, certbot_issue
from tests.acme_raw import RawClient, b64
from tests.cluster_fixtures import (
    Database,
    database,
    postgres,
    start_cluster,
    stop_cluster,
)
from tests.conftest import _RUNNING, AcmemsFactory, make_csr
from tests.gates import HttpGate
from tests.realservices import Bind, NginxTls, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres"]  # fixtures


def _issued_at_ca(ca: Pebble) -> int:
    return ca.log.read_text(errors="replace").count("Issued certificate serial")


def _acme_requests(port: int) -> float:
    """Every ACME request an instance answered (all resources and statuses)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("acmems_acme_requests_total{")
    )


def _acme_section(site: AcmeSite, port: int) -> str:
    return ini.section("acme-server", {"listener": f"127.0.0.1:{port}", "certificate": site.cert, "key": site.key})


def test_certbot_through_three_instances_behind_round_robin_gets_one_certificate(
    acmems_factory: AcmemsFactory, pebble: Pebble, database: Database, tmp_path: Path
) -> None:
    site = AcmeSite.make(tmp_path / "site")
    ports = [free_port() for _ in range(3)]
    issued_before = _issued_at_ca(pebble)
    # one [acme-server] listener per instance (the configurations differ only there)
    each = ["\n" + _acme_section(site, port) for port in ports]
    cluster = start_cluster(acmems_factory, pebble, tmp_path / "account", database, tmp_path, count=3, each=each)
    try:
        front = NginxTls(tmp_path / "front", free_port(), ports, site.cert, site.key).start()
        _RUNNING.append(("nginx front", front.log))
        try:
            rc, out = certbot_issue(
                site,
                tmp_path / "certbot",
                ["rr.example.test", "www.rr.example.test"],
                "--cert-name",
                "rr",
                directory=f"https://127.0.0.1:{front.port}/directory",
            )
            assert rc == 0, out
        finally:
            front.stop()
            _RUNNING.remove(("nginx front", front.log))
        leaf = x509.load_pem_x509_certificate((tmp_path / "certbot" / "conf" / "live" / "rr" / "cert.pem").read_bytes())
        assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName) is not None
        assert _issued_at_ca(pebble) == issued_before + 1  # one order upstream
        answered = [_acme_requests(i.mgmt_port) for i in cluster.instances]
        assert all(count > 0 for count in answered), answered  # every instance answered some of them
        listed = subprocess.run(
            [sys.executable, "-m", "acmems", "list", str(cluster.instances[2].config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"rr\.example\.test, www\.rr\.example\.test  \(ACME account \S+\)", listed), listed
    finally:
        stop_cluster(cluster)


@pytest.mark.slow
def test_an_instance_killed_while_its_order_is_processing_another_finishes_it(
    acmems_factory: AcmemsFactory, bind: Bind, database: Database, tmp_path: Path
) -> None:
    site = AcmeSite.make(tmp_path / "site")
    ca = Pebble(tmp_path / "pebble", bind.port, free_port()).start()
    behind = free_port()
    ports = [free_port(), free_port()]
    try:
        with HttpGate(ca.http_port, behind) as gate:
            each = ["\n" + _acme_section(site, port) for port in ports]
            cluster = start_cluster(
                acmems_factory, ca, tmp_path / "account", database, tmp_path, count=2, proxy_port=behind, each=each
            )
            try:
                holder, other = cluster.instances
                # one name for both, as behind a balancer: the same URLs whichever instance answers
                first = RawClient(ports[0], site.ca_file, host="acmems.example.test")
                assert first.new_account().status == 201
                order = first.new_order(["killed.example.test"]).json()
                pem, _ = make_csr(["killed.example.test"])
                der = b64(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
                body = first.jws(order["finalize"], {"csr": der})
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    finalizing = pool.submit(first.request, "POST", order["finalize"], body)
                    assert gate.wait_held(1, waits.ISSUANCE), "the CA checks the holder's challenge"
                    assert holder.proc is not None
                    holder.proc.send_signal(signal.SIGKILL)
                    holder.proc.wait(10)
                    with pytest.raises(OSError):
                        finalizing.result()
                gate.release()
                # the same account, its next request at the other instance: the order is carried on there
                second = RawClient(ports[1], site.ca_file, host="acmems.example.test", key=first.key, kid=first.kid)
                second.get_directory()
                url = order["finalize"].removesuffix("/finalize")
                state: dict[str, object] = {}

                def valid() -> bool:
                    state.update(second.post(url, None).json())
                    return state.get("status") == "valid"

                wait_for(valid, waits.after(10, waits.LEASE_LAPSE), "the order finished by the other instance")
                chain = second.post(str(state["certificate"]), None)
                assert chain.status == 200 and b"BEGIN CERTIFICATE" in chain.body
                assert _issued_at_ca(ca) == 1  # the holder's order, resumed: not a second one
                assert "issued a certificate for killed.example.test" in other.log_text()
            finally:
                stop_cluster(cluster)
    finally:
        ca.stop()
