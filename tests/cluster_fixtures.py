"""Fixtures of the cluster tests: a real PostgreSQL, a fresh database per test, and three acmems on it
behind one nginx (plain round robin) on the port the session Pebble sends its HTTP-01 checks to."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import ini
from tests.conftest import _RUNNING, AcmemsFactory
from tests.pgservice import PASSWORD, Postgres
from tests.realservices import Acmems, Bind, Nginx, Pebble, free_port

__all__ = ["Cluster", "Database", "cluster_config", "database", "postgres", "start_cluster", "stop_cluster", "three"]

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres().start()
    _RUNNING.append(("postgres", server.log))
    yield server
    server.remove()


@dataclass
class Database:
    """A fresh database on the test PostgreSQL, owned by the role acmems."""

    server: Postgres
    name: str
    password_file: Path
    via_port: int | None = None  # the instances reach it through this port (a SlowLink)
    uri: str | None = None  # how the instances reach it, when not the server's own address (failover)

    @property
    def dsn(self) -> str:
        if self.uri is not None:
            return self.uri
        return f"postgresql://acmems@127.0.0.1:{self.via_port or self.server.port}/{self.name}"

    def query(self, statement: str) -> str:
        return self.server.psql(statement, database=self.name)


@pytest.fixture
def database(postgres: Postgres, tmp_path: Path) -> Iterator[Database]:
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()  # a test stopped it
    name = f"acmems_{next(_numbers)}"
    postgres.psql(f"CREATE DATABASE {name} OWNER acmems", database="postgres")
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    yield Database(postgres, name, secret)
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", database="postgres")


def cluster_config(
    pebble: Pebble,
    account_dir: Path,
    db: Database,
    name: str,
    mgmt_port: int,
    http_port: int,
    bind: Bind | None = None,
    extra: Sequence[str] = (),
    auth: Mapping[str, str] | None = None,
    account: Mapping[str, str] | None = None,
    **mgmt: str | int,
) -> str:
    """An instance of a cluster: HTTP-01 on ``http_port``, or with ``bind`` DNS-01 there; ``extra``
    sections, ``auth`` keys of its auth block and ``account`` keys of ``[account]`` added."""
    verification = ini.http01("http", http_port) if bind is None else ini.dns01("dns", bind, ttl=5, timeout=2)
    return ini.ini(
        ini.account(pebble, account_dir, **(account or {})),
        ini.mgmt(mgmt_port, **mgmt),
        ini.cluster(db.dsn, db.password_file, name),
        verification,
        ini.database_storage("shared"),
        ini.auth(
            "local",
            ["*.example.test"],
            ip="127.0.0.1",
            storage="shared",
            verification="http" if bind is None else "dns",
            **(auth or {}),
        ),
        *extra,
    )


@dataclass
class Cluster:
    instances: list[Acmems]
    proxy: Nginx
    configs: list[str]


def start_cluster(
    factory: AcmemsFactory,
    pebble: Pebble,
    account_dir: Path,
    db: Database,
    tmp_path: Path,
    count: int = 3,
    bind: Bind | None = None,
    extra: Sequence[str] = (),
    auth: Mapping[str, str] | None = None,
    proxy_port: int | None = None,
    account: Mapping[str, str] | None = None,
    each: Sequence[str] = (),
    **mgmt: str | int,
) -> Cluster:
    """``count`` acmems on one database; nginx round-robins the CA's checks over their challenge
    listeners (on the CA's HTTP port, or on ``proxy_port`` when something else stands there);
    ``each``: one more section per instance (its own listener)."""
    ports = [(free_port(), free_port()) for _ in range(count)]
    letters = "abcdefgh"[:count]
    own = list(each) or [""] * count
    configs = [
        cluster_config(pebble, account_dir, db, f"acmems-{letter}", port, http, bind, extra, auth, account, **mgmt)
        + own_section
        for letter, (port, http), own_section in zip(letters, ports, own, strict=True)
    ]
    front = pebble.http_port if proxy_port is None else proxy_port
    proxy = Nginx(tmp_path / "nginx", front, [http for _, http in ports], retry_404=False).start()
    _RUNNING.append(("nginx", proxy.log))
    instances = [
        factory(config, mgmt, name=f"acmems-{letter}")
        for letter, config, (mgmt, _) in zip(letters, configs, ports, strict=True)
    ]
    return Cluster(instances, proxy, configs)


def stop_cluster(cluster: Cluster) -> None:
    """Stop the proxy (the acmems processes are the factory's)."""
    cluster.proxy.stop()
    _RUNNING[:] = [(n, p) for n, p in _RUNNING if n != "nginx"]


@pytest.fixture
def three(
    acmems_factory: AcmemsFactory, pebble: Pebble, account_dir: Path, database: Database, tmp_path: Path
) -> Iterator[Cluster]:
    """Three acmems on one database behind nginx (plain round robin), against the session Pebble."""
    cluster = start_cluster(acmems_factory, pebble, account_dir, database, tmp_path)
    original = cluster.proxy
    yield cluster
    original.stop()  # a test may have replaced it
    stop_cluster(cluster)
