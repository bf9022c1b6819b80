"""The CA's rateLimited answers pause only what the CA refused (issue 25): a client that runs into
the exact-set, per-domain or failed-authorization limit stops its own names, not the other teams'.
The CA is Pebble behind tests.ca_proxy, which answers newOrder with Boulder's 429s for chosen names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ini
from tests.ca_proxy import BOULDER, RateLimitingCa
from tests.cluster_fixtures import Database, database, postgres, start_cluster, stop_cluster
from tests.conftest import AcmemsFactory, curl_post, make_csr
from tests.realservices import Acmems, Pebble, free_port

pytestmark = pytest.mark.integration
__all__ = ["database", "postgres"]  # fixtures

HOUR = 3600


@pytest.fixture
def limiting(pebble: Pebble, tmp_path: Path) -> Iterator[RateLimitingCa]:
    with RateLimitingCa(pebble, tmp_path / "proxy") as proxy:
        yield proxy


def _start(factory: AcmemsFactory, proxy: RateLimitingCa, pebble: Pebble, account_dir: Path, tmp_path: Path) -> Acmems:
    port = free_port()
    config = ini.ini(
        ini.account(pebble, account_dir, **{"acme-server": proxy.directory_url}),
        ini.mgmt(port),
        ini.http01("http", pebble.http_port),
        ini.file_storage("file", tmp_path / "storage"),
        ini.auth("local", ["*.example.test", "*.example.org"], ip="127.0.0.1"),
    )
    return factory(config, port)


def _sign(server: Acmems, names: list[str]) -> tuple[int, str, dict[str, str]]:
    status, body, headers = curl_post(f"http://127.0.0.1:{server.mgmt_port}/sign", make_csr(names)[0])
    return status, body.decode(errors="replace"), headers


def test_each_limit_pauses_what_the_ca_refused_and_the_other_teams_go_on(
    acmems_factory: AcmemsFactory, limiting: RateLimitingCa, pebble: Pebble, tmp_path: Path
) -> None:
    server = _start(acmems_factory, limiting, pebble, tmp_path / "account", tmp_path)

    # "5 certificates per exact set of identifiers": that set is paused, nothing else.
    limiting.refuse_sets["web.team-a.example.test"] = (BOULDER["set"], HOUR)
    status, body, headers = _sign(server, ["web.team-a.example.test"])
    assert status == 429 and "exact set of identifiers" in body and int(headers["retry-after"]) == HOUR
    status, body, headers = _sign(server, ["web.team-a.example.test"])  # a new key, the same names
    assert status == 429 and "the CA paused the set of names web.team-a.example.test" in body
    assert " UTC (" in body and 0 < int(headers["retry-after"]) <= HOUR
    assert len(limiting.refused) == 1  # held here: the CA was not asked again
    assert _sign(server, ["web.team-a.example.test", "www.team-a.example.test"])[0] == 200  # another set
    assert _sign(server, ["web.team-b.example.test"])[0] == 200  # another team

    # "5 failed authorizations per identifier": that name, in any set; its set-mates alone go on.
    limiting.refuse["mail.team-a.example.test"] = (BOULDER["name"].format(value="mail.team-a.example.test"), HOUR)
    assert _sign(server, ["mail.team-a.example.test", "smtp.team-a.example.test"])[0] == 429
    status, body, _ = _sign(server, ["imap.team-a.example.test", "mail.team-a.example.test"])
    assert status == 429 and "the name mail.team-a.example.test" in body
    assert _sign(server, ["smtp.team-a.example.test"])[0] == 200
    assert len(limiting.refused) == 2

    # "50 certificates per registered domain": every name under it, nothing under another domain.
    limiting.refuse["api.example.org"] = (BOULDER["domain"].format(value="example.org"), HOUR)
    assert _sign(server, ["api.example.org"])[0] == 429
    status, body, _ = _sign(server, ["www.example.org"])
    assert status == 429 and "the registered domain example.org" in body
    assert _sign(server, ["api.team-c.example.test"])[0] == 200
    assert len(limiting.refused) == 3

    # Words no rule knows: the order's exact set.
    limiting.refuse["odd.team-d.example.test"] = ("please slow down", HOUR)
    assert _sign(server, ["odd.team-d.example.test"])[0] == 429
    assert "the set of names odd.team-d.example.test" in _sign(server, ["odd.team-d.example.test"])[1]
    assert _sign(server, ["even.team-d.example.test"])[0] == 200

    # "300 new orders per account": the account, every team.
    limiting.refuse["busy.team-e.example.test"] = (BOULDER["account"], 120)
    assert _sign(server, ["busy.team-e.example.test"])[0] == 429
    status, body, headers = _sign(server, ["web.team-f.example.test"])
    assert status == 429 and "every order of this account" in body and int(headers["retry-after"]) <= 120
    assert len(limiting.refused) == 5
    log = server.log_text()
    assert "the CA rate-limited the set of names web.team-a.example.test: no order for it for 3600 s" in log
    assert "Traceback" not in log


def test_a_pause_is_shared_by_the_cluster_and_holds_only_its_scope(
    acmems_factory: AcmemsFactory,
    limiting: RateLimitingCa,
    pebble: Pebble,
    database: Database,
    tmp_path: Path,
) -> None:
    cluster = start_cluster(
        acmems_factory,
        pebble,
        tmp_path / "account",  # registered through the proxy: its URLs are the account's
        database,
        tmp_path,
        count=2,
        account={"acme-server": limiting.directory_url},
    )
    try:
        first, second = cluster.instances
        limiting.refuse["mail.team-a.example.test"] = (BOULDER["name"].format(value="mail.team-a.example.test"), HOUR)
        assert _sign(first, ["mail.team-a.example.test"])[0] == 429
        status, body, headers = _sign(second, ["mail.team-a.example.test", "imap.team-a.example.test"])
        assert status == 429 and "the CA paused the name mail.team-a.example.test" in body
        assert 0 < int(headers["retry-after"]) <= HOUR
        assert len(limiting.refused) == 1  # the second instance did not ask the CA
        assert _sign(second, ["imap.team-a.example.test"])[0] == 200
        rows = database.query("SELECT scope || ' ' || value FROM acmems_ca_pauses")
        assert rows.strip() == "name mail.team-a.example.test"
    finally:
        stop_cluster(cluster)
