"""A second CA to fall back to (``[account "NAME"]`` and an auth block's ``ca`` list): two real Pebbles."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ini, waits
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.realservices import Acmems, Bind, Pebble, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def two_cas(bind: Bind, tmp_path: Path) -> Iterator[tuple[Pebble, Pebble]]:
    http = free_port()  # both CAs check HTTP-01 on the same port: this test's acmems listens there
    first = Pebble(tmp_path / "first", bind.port, http).start()
    backup = Pebble(tmp_path / "backup", bind.port, http).start()
    yield first, backup
    first.stop()
    backup.stop()


def _config(first: Pebble, backup: Pebble, tmp_path: Path, port: int) -> str:
    named = ini.account(backup, tmp_path / "backup-account").replace("[account]", '[account "backup"]')
    return ini.ini(
        ini.account(first, tmp_path / "account"),
        named,
        ini.mgmt(port),
        ini.http01("http", first.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test"], ip="127.0.0.1", ca="default backup"),
    )


def _issued(ca: Pebble) -> int:
    return ca.log.read_text(errors="replace").count("Issued certificate serial")


def _sign(server: Acmems, names: list[str]) -> tuple[int, bytes]:
    status, body, _ = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", make_csr(names)[0])
    return status, body


def test_the_first_ca_down_the_second_issues_and_the_first_is_back_for_the_next(
    acmems_factory: AcmemsFactory, two_cas: tuple[Pebble, Pebble], tmp_path: Path
) -> None:
    first, backup = two_cas
    port = free_port()
    server = acmems_factory(_config(first, backup, tmp_path, port), port)
    assert _sign(server, ["one.example.test"])[0] == 200
    assert "ca=default" in server.log_text() and _issued(first) == 1
    first.stop()
    status, body = _sign(server, ["two.example.test"])
    assert status == 200, body
    assert _issued(backup) == 1
    assert "names=two.example.test outcome=issued status=200" in server.log_text()
    assert "ca=backup" in server.log_text() and "trying backup" in server.log_text()
    first.start()  # back (it forgot the account: acmems registers again, no reason to fall over)
    assert _sign(server, ["three.example.test"])[0] == 200
    assert _issued(first) == 2 and _issued(backup) == 1  # the first CA again (its log goes on)
    assert server.log_text().count("ca=backup") == 1
    listed = subprocess.run(
        [sys.executable, "-m", "acmems", "list", str(server.config)], capture_output=True, text=True, check=True
    ).stdout
    assert next(line for line in listed.splitlines() if "two.example.test" in line).split()[5] == "backup"
    assert next(line for line in listed.splitlines() if "three.example.test" in line).split()[5] == "default"


def test_a_failed_validation_at_the_first_ca_is_not_tried_at_the_second(
    acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path
) -> None:
    # The first CA checks HTTP-01 on a port where nothing listens: the validation fails there, and
    # the second CA (which would succeed) must not be asked: it would validate the same names.
    http = free_port()
    first = Pebble(tmp_path / "first", bind.port, free_port()).start()
    backup = Pebble(tmp_path / "backup", bind.port, http).start()
    try:
        port = free_port()
        config = _config(first, backup, tmp_path, port).replace(
            f"listener = 127.0.0.1:{first.http_port}", f"listener = 127.0.0.1:{http}"
        )
        server = acmems_factory(config, port)
        status, body = _sign(server, ["refused.example.test"])
        assert status == 421, body
        assert _issued(backup) == 0 and "order-plz" not in backup.log.read_text()
        assert "trying backup" not in server.log_text()
    finally:
        first.stop()
        backup.stop()


@pytest.mark.slow
def test_a_certificate_from_the_fallback_is_renewed_at_the_first_ca_again(
    acmems_factory: AcmemsFactory, bind: Bind, tmp_path: Path
) -> None:
    # 15-second certificates renewed in the background every second: issued by the backup while the
    # first CA is down, renewed by the first once it is back.
    http = free_port()
    profiles = {"default": 90 * 86400, "tiny": 15}
    first = Pebble(tmp_path / "first", bind.port, http, profiles=profiles).start()
    backup = Pebble(tmp_path / "backup", bind.port, http, profiles=profiles).start()
    try:
        port = free_port()
        config = (
            _config(first, backup, tmp_path, port)
            .replace("[mgmt]\n", "[mgmt]\nrenewal-interval = 1\n")
            .replace('[auth "local"]\n', '[auth "local"]\nprofile = tiny\n')
        )
        first.stop()
        server = acmems_factory(config, port)
        assert _sign(server, ["renew.example.test"])[0] == 200
        assert _issued(backup) == 1
        first.start()
        # acmems' own lines, not Pebble's count (Pebble logs "Issued" before acmems has the chain); a
        # renewal tried while the first CA was still starting is retried after its backoff (60 s).
        wait_for(
            lambda: (
                "(verification http, ca default)" in server.log_text()
                and "renewed renew.example.test ahead of its clients" in server.log_text()
            ),
            waits.RENEWAL_RETRY,  # its backoff, then an order
            "the renewal at the first CA",
        )
        assert _issued(first) >= 1
        assert "renewed renew.example.test ahead of its clients" in server.log_text()
        assert "issued a certificate for renew.example.test" in server.log_text()
        assert "(verification http, ca default)" in server.log_text()
    finally:
        first.stop()
        backup.stop()
